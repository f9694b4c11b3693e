"""The dbt resource: dagster-dbt's ``DbtCliResource`` without its in-process adapter handle.

The one place the platform relies on a non-public part of a dependency (issue 15: where no public
API exists, one small adapter, a contract test against the installed version --
``music_platform_tests/test_dbt_resource_contract.py`` -- and a version cap, ``dagster-dbt<0.30``
in pyproject.toml).

Before every ``cli()`` call, dagster-dbt 0.29 builds a dbt adapter inside the Dagster process
(``DbtCliResource._initialize_dbt_core_adapter``: it imports dbt-core and the adapter plugin, loads
the profile and project and every base macro). The handle serves only the optional
``fetch_row_counts``/``fetch_column_metadata`` of the event stream, which this project does not use:
it reads each table itself once dbt has exited (``defs/transform/dbt.py``). It costs 4 s per call,
18 s in a fresh run process (imports included), measured at load 15 on 2 cores, which is most of
a daily run's dbt fixed cost; there is no option to turn it off (dagster-dbt skips it only for
the Fusion engine). Everything else is the public resource: the version check is answered fast by
the ``music-platform-dbt`` executable (``dbt_launcher.py``), not by an override.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster_dbt import DbtCliResource


class PlatformDbtCliResource(DbtCliResource):
    """``DbtCliResource`` whose invocations carry no in-process adapter handle (see the module)."""

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # the contract-tested override
        del args
        return None
