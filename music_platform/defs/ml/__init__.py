"""ml definitions."""
