"""Built-in IdP plugins; each registers through the `scim_hub` entry-point group."""
