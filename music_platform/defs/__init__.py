"""Dagster definitions, autoloaded from this folder (``ComponentTree.build_defs``, the part of ``load_from_defs_folder`` that builds the folder; one folder per domain)."""
