"""Dagster definitions, autoloaded by ``load_from_defs_folder`` (one folder per domain)."""
