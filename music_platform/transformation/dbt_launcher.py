"""``music-platform-dbt``: the dbt executable Dagster runs (``DbtCliResource.dbt_executable``).

It is dbt's own command line (``dbt.cli.main:cli``, what the ``dbt`` script runs), except that
``--version`` answers from the installed dbt-core's metadata. dagster-dbt asks the executable for
its version once per resource (to tell dbt Core from the Fusion engine); plain ``dbt --version``
imports every installed adapter first, Snowflake's among them, which cost 8-25 s per run here.
"""

from __future__ import annotations

import sys
from importlib.metadata import version


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        # The format of `dbt --version`'s first lines; dagster-dbt reads the first x.y.z.
        print(f"Core:\n  - installed: {version('dbt-core')}")
        return
    from dbt.cli.main import cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
