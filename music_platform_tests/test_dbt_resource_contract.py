"""Contract of the one non-public piece of dagster-dbt the platform relies on
(``music_platform/transformation/dbt_resource.py``), against the installed version.

If dagster-dbt renames or stops calling ``_initialize_dbt_core_adapter``, or changes what it
returns to, these tests fail and name the file to revisit; pyproject.toml caps dagster-dbt below
0.30 so that a new minor version is taken on purpose.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging.requirements import Requirement
from packaging.version import Version

from music_platform.transformation.dbt_resource import PlatformDbtCliResource
from music_platform.transformation.project import dbt_executable

ROOT = Path(__file__).resolve().parent.parent


def test_dagster_dbt_is_capped_below_the_next_minor_version_and_installed_within_it():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d).specifier for d in dependencies if Requirement(d).name == "dagster-dbt")
    assert not spec.contains("0.30.0"), "dagster-dbt must stay capped: dbt_resource.py relies on 0.29's internals"
    assert spec.contains(version("dagster-dbt"))


def test_the_overridden_method_exists_with_the_same_signature_and_cli_calls_it_for_dbt_core():
    original = inspect.signature(DbtCliResource._initialize_dbt_core_adapter)  # noqa: SLF001 - the contract
    assert list(original.parameters) == ["self", "args"]
    assert list(inspect.signature(PlatformDbtCliResource._initialize_dbt_core_adapter).parameters) == ["self", "args"]  # noqa: SLF001
    cli = inspect.getsource(DbtCliResource.cli)
    # dbt Core (not Fusion) gets the in-process handle, and a failure to build it is tolerated
    # (the handle is optional): returning None is a state dagster-dbt already handles.
    assert "self._initialize_dbt_core_adapter(args)" in cli
    assert "adapter: BaseAdapter | None = None" in cli or "adapter = None" in cli
    assert "adapter=adapter" in cli


def test_the_dbt_executable_reports_the_installed_dbt_core_version_the_way_dagster_dbt_reads_it():
    # dagster-dbt reads the first x.y.z of `<executable> --version` (its _cli_version)
    output = subprocess.run([dbt_executable(), "--version"], capture_output=True, text=True, check=True).stdout
    first = next(word for word in output.replace(":", " ").split() if word[:1].isdigit())
    assert Version(first) == Version(version("dbt-core")) and Version(first).major < 2
    assert Path(dbt_executable()).parent == Path(sys.executable).parent


def test_the_resource_is_still_a_dbt_cli_resource_with_public_options_only(tmp_path):
    (tmp_path / "dbt_project.yml").write_text("name: x\nversion: '1'\nprofile: x\n", encoding="utf-8")
    resource = PlatformDbtCliResource(project_dir=str(tmp_path), dbt_executable=dbt_executable())
    assert isinstance(resource, DbtCliResource)
    assert resource._initialize_dbt_core_adapter(["build"]) is None  # noqa: SLF001 - the contract
