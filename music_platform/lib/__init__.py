"""Dagster-specific building blocks shared by the definitions: materialisation metadata.

(Asset-check building blocks live with the checks, in ``music_platform.defs.quality.checks``;
the rules they apply in ``music_platform.quality``.)
"""
