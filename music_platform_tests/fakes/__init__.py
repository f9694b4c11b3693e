"""Local fake servers of the external APIs (127.0.0.1 only) used by tests and by hand."""
