"""Dagster definitions, autoloaded from this folder, one folder per domain.

``music_platform.definitions.build_defs`` builds it through ``ComponentTree.build_defs``: the part
of ``load_from_defs_folder`` that builds the folder, without the installed libraries' catalogue.
"""
