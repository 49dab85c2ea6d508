"""The domain: workspaces, tokens, users, groups. No web framework is imported here."""
