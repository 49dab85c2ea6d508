"""SCIM 2.0 over HTTP: routes, wire handling, discovery documents and error responses."""
