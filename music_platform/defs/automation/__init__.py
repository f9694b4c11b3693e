"""automation definitions."""
