"""transform definitions."""
