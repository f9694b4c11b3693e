"""The operator documentation stays true to the code (issue 8).

- docs/operations.md lists every asset check of the definitions, by asset, and no check that
  does not exist (``python -m music_platform_tests.test_ui_docs`` prints the table, ``--write``
  rewrites it in place);
- the documentation set exists and its links to files in the repository resolve.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS = PROJECT_ROOT / "docs"
OPERATIONS = DOCS / "operations.md"
DOCUMENTATION_SET = [
    "architecture/architecture.md",
    "architecture/TECHNOLOGY_CHOICES.md",
    "DATA_FLOW.md",
    "project-spec.md",
    "operations.md",
    "data-source/batch-source-validation.md",
    "data-source/stream-source-validation.md",
]
TABLE_ROW = re.compile(r"^\| `(?P<asset>[a-z_]+/[a-z0-9_]+)` \| (?P<checks>`.*`) \|$")


def checks_by_asset() -> dict[str, list[str]]:
    from music_platform.definitions import defs as load_defs

    graph = load_defs().resolve_asset_graph()
    by_asset: dict[str, list[str]] = defaultdict(list)
    for key in graph.asset_check_keys:
        by_asset[key.asset_key.to_user_string()].append(key.name)
    return {asset: sorted(names) for asset, names in sorted(by_asset.items())}


def checks_table(by_asset: dict[str, list[str]]) -> str:
    lines = ["| asset | checks |", "|---|---|"]
    lines += [f"| `{asset}` | " + ", ".join(f"`{n}`" for n in names) + " |" for asset, names in by_asset.items()]
    return "\n".join(lines)


def documented_checks(text: str) -> dict[str, list[str]]:
    section = text.split("### Every check, by asset", 1)[1]
    documented = {}
    for line in section.splitlines():
        match = TABLE_ROW.match(line.strip())
        if match:
            documented[match["asset"]] = sorted(re.findall(r"`([^`]+)`", match["checks"]))
    return documented


def test_operations_lists_every_check_of_the_definitions():
    documented = documented_checks(OPERATIONS.read_text(encoding="utf-8"))
    actual = checks_by_asset()
    missing = {a: sorted(set(c) - set(documented.get(a, []))) for a, c in actual.items()}
    stale = {a: sorted(set(c) - set(actual.get(a, []))) for a, c in documented.items()}
    missing, stale = ({a: c for a, c in d.items() if c} for d in (missing, stale))
    assert not missing and not stale, (
        f"docs/operations.md is out of date (missing {missing}, no longer defined {stale}); "
        "regenerate the table with `.venv/bin/python -m music_platform_tests.test_ui_docs`"
    )


@pytest.mark.parametrize("relative", DOCUMENTATION_SET)
def test_the_documentation_set_exists_and_its_links_resolve(relative):
    path = DOCS / relative
    assert path.exists(), path
    text = path.read_text(encoding="utf-8")
    assert len(text) > 500, f"{path} is nearly empty"
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        if not (path.parent / target).resolve().exists():
            broken.append(target)
    assert not broken, f"{relative} links to missing files: {broken}"


def rewrite_operations_table(table: str) -> None:
    """Replace the generated table under "Every check, by asset" in docs/operations.md."""
    head, rest = OPERATIONS.read_text(encoding="utf-8").split("### Every check, by asset", 1)
    lines = rest.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if TABLE_ROW.match(line.strip()) or line.startswith("| asset |"))
    last = first
    while last < len(lines) and lines[last].startswith("|"):
        last += 1
    rest = "".join(lines[:first]) + table + "\n" + "".join(lines[last:])
    OPERATIONS.write_text(head + "### Every check, by asset" + rest, encoding="utf-8")


if __name__ == "__main__":
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):  # dbt's selection notices go to stderr
        table = checks_table(checks_by_asset())
    if "--write" in sys.argv[1:]:
        rewrite_operations_table(table)
    else:
        print(table)
