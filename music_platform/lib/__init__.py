"""Dagster-specific building blocks shared by the definitions (check factories, metadata)."""
