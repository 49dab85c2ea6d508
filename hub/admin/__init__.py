"""Admin REST API and dashboard for workspace admins (built in the cards and dashboard issues)."""
