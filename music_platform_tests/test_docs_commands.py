"""The commands in the documentation name real commands and options (issue 8).

Every shell command in README.md and docs/**/*.md (fenced code blocks, and inline code that
starts with a command) is parsed, without running anything:

- ``music-platform …``: the subcommand path and every option are parsed by the typer app's
  own click parser (``make_context``: unknown subcommands, unknown options and values of the
  wrong type fail), and ``--help`` on that path answers through ``CliRunner``;
- ``dagster …`` / ``dg …`` / ``dbt …``: parsed by their own click command groups the same
  way; asset keys given to ``--select``, sensors to ``dagster sensor start`` and ops in
  ``--config-json`` must exist in the code (source files and dbt models, not the loaded
  definitions, to keep this test fast);
- ``make TARGET``: the target exists in the Makefile;
- ``pytest …``: the test files exist and a ``-k`` name matches a test in them;
- ``python -m MODULE``: the module exists; an argparse ``main(argv)`` parses the arguments;
- ``python benchmarks/x.py --opt``: the script exists and defines each option;
- ``docker compose …``: the services named exist in docker-compose.yml.

Commands whose first word is anything else (ls, cp, tail, export, …) are not checked here.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import inspect
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").rglob("*.md")])
CHECKED = {"music-platform", "dagster", "dg", "dbt", "make", "pytest", "python", "python3", "docker"}
WRAPPERS = {"time", "env", "exec", "nohup"}  # prefixes that run the next word
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
PLACEHOLDER = re.compile(r"^(…|\.\.\.|<[^>]*>|[A-Z][A-Z_]{2,}|[a-z_]*\.\.\.)$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class DocCommand:
    document: str
    line: int
    text: str
    words: tuple[str, ...]

    @property
    def program(self) -> str:
        return Path(self.words[0]).name

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: {self.text}"


# -- extraction ---------------------------------------------------------------------------------


def _shell_lines(block: str):
    """(offset, logical line) of a shell block: continuations joined, heredoc bodies skipped."""
    lines = block.split("\n")
    i, heredoc_end = 0, None
    while i < len(lines):
        start, line = i, lines[i]
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            i += 1
            continue
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        if match := re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line):
            heredoc_end = match.group(1)
        if line.strip() and not line.lstrip().startswith("#"):
            yield start, line


def _words(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at pipes, &&, ;), without env assignments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line
        return []
    commands, current = [], []
    for token in tokens:
        if token in SEPARATORS or set(token) <= set("<>&|;"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    out = []
    for words in commands:
        while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] in WRAPPERS):
            words = words[1:]
        if words and words[0] == "flock":  # flock LOCKFILE COMMAND ...
            words = words[2:]
        if words:
            out.append(words)
    return out


def _is_command(words: list[str]) -> bool:
    # `make` or `.venv/bin/dbt`, not the folder `dbt/`
    return bool(words) and any(words[0] == p or words[0].endswith("/" + p) for p in CHECKED)


def extract_commands(path: Path) -> list[DocCommand]:
    text = re.sub(r"^(?:> ?)+", "", path.read_text(encoding="utf-8"), flags=re.M)  # quoted blocks too
    relative = path.relative_to(PROJECT_ROOT).as_posix()
    found: list[DocCommand] = []
    for fence in FENCE.finditer(text):
        language, body = fence.group(1), fence.group(2)
        if language not in ("", "bash", "sh", "shell", "console"):
            continue
        first_line = text.count("\n", 0, fence.start(2)) + 1
        for offset, line in _shell_lines(body):
            for words in _words(line):
                if _is_command(words):
                    found.append(DocCommand(relative, first_line + offset, line.strip(), tuple(words)))
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in re.finditer(r"`([^`]+)`", prose):
        code = " ".join(span.group(1).split())
        line = prose.count("\n", 0, span.start()) + 1
        # `music-platform demo | serve | check-apis`: a list of subcommands, not a pipe.
        listed = re.match(r"^(\S*music-platform) (.+\|.+)$", code)
        alternatives = [f"{listed.group(1)} {alt.strip()}" for alt in listed.group(2).split("|")] if listed else [code]
        if " " not in code:  # a lone word (`dagster`, `make`) names a tool, it is not a command
            continue
        for alternative in alternatives:
            for words in _words(alternative.replace("[", " ").replace("]", " ")):
                if _is_command(words):
                    found.append(DocCommand(relative, line, code, tuple(words)))
                break  # only a span that starts with a command is one
    return found


ALL_COMMANDS = [command for document in DOCUMENTS for command in extract_commands(document)]


# -- checks per program -------------------------------------------------------------------------


def _drop_placeholders(words):
    """Placeholders (`…`, `<model>`, `COMMAND`): as a value, a dummy; as a subcommand, the end of the path."""
    out = []
    for word in words:
        word = word.removeprefix("[").removesuffix("]")  # usage syntax: [--users 200]
        if PLACEHOLDER.match(word):
            if out and out[-1].startswith("-") and "=" not in out[-1]:
                out.append("x")
                continue
            break
        out.append(word)
    return out


def _is_group(command) -> bool:
    return hasattr(command, "list_commands") and hasattr(command, "get_command")


def _parse_click(root, prog: str, args: list[str]) -> list[str]:
    """Resolve the subcommand path and parse the options as the CLI would, without invoking it.

    Duck-typed: typer ships its own copy of click, so its classes are not ``click``'s.
    """
    command, path, parent = root, [], None
    args = list(args)
    while _is_group(command) and args and not args[0].startswith("-"):
        context = command.context_class(command, info_name=path[-1] if path else prog, parent=parent)
        name = args.pop(0)
        sub = command.get_command(context, name)
        if sub is None:
            raise AssertionError(f"`{prog} {' '.join([*path, name])}`: no such subcommand")
        command, parent = sub, context
        path.append(name)
    if _is_group(command) and not args:  # a group named alone (its --help is checked)
        return path
    try:
        with command.make_context(path[-1] if path else prog, args, parent=parent):
            pass
    except Exception as exc:
        if type(exc).__name__ == "Exit":  # --help and other eager options end parsing
            assert exc.exit_code == 0
        elif hasattr(exc, "format_message"):  # click's UsageError, BadParameter, NoSuchOption, ...
            raise AssertionError(f"`{prog} {' '.join(path)}`: {exc.format_message()}") from None
        else:
            raise
    return path


def _option_value(words, *names):
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def _defined_in_code(name: str) -> bool:
    """An asset, op, sensor or schedule name defined in the package (Python) or a dbt model."""
    if list((PROJECT_ROOT / "dbt" / "models").rglob(f"{name}.sql")):
        return True
    return bool(re.search(rf"(def {re.escape(name)}\(|[\"']{re.escape(name)}[\"'])", _package_source()))


@functools.cache
def _package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((PROJECT_ROOT / "music_platform").rglob("*.py")))


def check_music_platform(command: DocCommand) -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from music_platform.cli import app

    path = _parse_click(get_command(app), "music-platform", _drop_placeholders(command.words[1:]))
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"`music-platform {' '.join(path)} --help` failed: {result.output}"


def check_dagster(command: DocCommand) -> None:
    from dagster._cli import cli

    words = _drop_placeholders(command.words[1:])
    path = _parse_click(cli, "dagster", words)
    _check_selection(command, _option_value(words, "--select") or "")
    if path[:2] == ["sensor", "start"] or path[:2] == ["schedule", "start"]:
        names = [w for w in words[2:] if not w.startswith("-") and w != _option_value(words, "-w", "--workspace")]
        for name in names:
            assert _defined_in_code(name), f"{command}: {path[0]} {name!r} is not defined"
    if config := _option_value(words, "--config-json"):
        for op in json.loads(config).get("ops", {}):
            assert _defined_in_code(op), f"{command}: op {op!r} is not defined"


def check_dg(command: DocCommand) -> None:
    from dagster_dg_cli.cli import cli

    words = _drop_placeholders(command.words[1:])
    path = _parse_click(cli, "dg", words)
    if path[:1] == ["launch"]:
        _check_selection(command, _option_value(words, "--assets") or "")
        if config := _option_value(words, "--config-json"):
            for op in json.loads(config).get("ops", {}):
                assert _defined_in_code(op), f"{command}: op {op!r} is not defined"
    if path[:1] in (["launch"], ["dev"], ["check"]) and not _option_value(words, "-m", "--module-name", "-w"):
        # without a target, dg loads the project's code location: [tool.dg.project] must name it
        assert dg_project_module() == "music_platform.definitions", f"{command}: [tool.dg.project] names no module"


@functools.cache
def dg_project_module() -> str:
    """The module ``dg dev`` / ``dg launch`` load here, resolved by dg itself from pyproject.toml."""
    from dagster_dg_core.context import DgContext

    context = DgContext.for_project_environment(PROJECT_ROOT, {})
    module = context.target_args.get("module_name")
    assert module and importlib.util.find_spec(module) is not None, f"dg resolves no module: {context.target_args}"
    return module


def _check_selection(command: DocCommand, selection: str) -> None:
    # simple selections (`raw/x,marts/y`); richer syntax (`key:"raw/x"+ and not group:"ml"`) via its keys
    keys = re.findall(r'key:"([^"]+)"', selection) or [k for k in selection.split(",") if k]
    for key in keys:
        assert _defined_in_code(key.rsplit("/", 1)[-1]), f"{command}: asset {key!r} is not defined"


def check_dbt(command: DocCommand, monkeypatch) -> None:
    from dbt.cli.main import cli

    # dbt runs from the project folder, next to profiles.yml, or from the root with --project-dir dbt
    monkeypatch.chdir(PROJECT_ROOT if "--project-dir" in command.words else PROJECT_ROOT / "dbt")
    _parse_click(cli, "dbt", _drop_placeholders(command.words[1:]))


def check_make(command: DocCommand) -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, re.M))
    goals = [w for w in command.words[1:] if not w.startswith("-") and "=" not in w]
    for goal in goals or ["help"]:
        assert goal in targets, f"{command}: no target {goal!r} in the Makefile ({sorted(targets)})"


def check_pytest(command: DocCommand, args: list[str]) -> None:
    files = [a for a in args if a.endswith(".py") or a.startswith("music_platform_tests")]
    sources = []  # no file named: the whole suite
    for name in files:
        paths = sorted(PROJECT_ROOT.glob(name.split("::")[0]))  # `test_serving*.py` too
        assert paths, f"{command}: {name} does not exist"
        sources += [p.read_text(encoding="utf-8") for p in paths]
    if (expr := _option_value(args, "-k")) and re.fullmatch(r"\w+", expr):
        assert not files or any(re.search(rf"def test\w*{expr}", s) for s in sources), (
            f"{command}: no test matches -k {expr}"
        )
    if (marker := _option_value(args, "-m")) is not None:
        declared = set(re.findall(r"^\s+(\w+):", (PROJECT_ROOT / "setup.cfg").read_text(), re.M))
        for word in re.findall(r"\w+", marker):
            assert word in declared | {"not", "and", "or"}, f"{command}: unknown marker {word!r}"


class _Parsed(Exception):
    pass


def check_python(command: DocCommand, monkeypatch) -> None:
    args = list(command.words[1:])
    if args[:2] == ["-m", "pytest"]:
        return check_pytest(command, args[2:])
    if args and args[0] == "-m":
        module = args[1]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{command}: no module {module}"
        source = Path(spec.origin).read_text(encoding="utf-8")
        if "argparse" in source and "def main(" in source:
            # parse the arguments with the module's own parser, then stop before it does anything
            original = argparse.ArgumentParser.parse_args

            def parse_then_stop(self, argv=None, namespace=None):
                original(self, argv, namespace)
                raise _Parsed

            rest = _drop_placeholders(args[2:])
            monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
            monkeypatch.setattr(sys, "argv", [module, *rest])
            main = importlib.import_module(module).main
            try:
                main(rest) if inspect.signature(main).parameters else main()
            except _Parsed:
                pass
            except SystemExit as exc:
                raise AssertionError(f"{command}: its arguments do not parse (exit {exc.code})") from None
            finally:
                monkeypatch.undo()
        return None
    scripts = [a for a in args if a.endswith(".py")]
    for script in scripts:
        path = PROJECT_ROOT / script
        assert path.exists(), f"{command}: {script} does not exist"
        source = path.read_text(encoding="utf-8")
        for option in (w.split("=", 1)[0] for w in args if w.startswith("--")):
            assert f'"{option}"' in source or f"'{option}'" in source, f"{command}: {script} has no option {option}"
    return None


def check_docker(command: DocCommand) -> None:
    words = list(command.words[1:])
    if words[:1] != ["compose"]:
        return
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = set(compose["services"])
    action, rest = (words[1], words[2:]) if len(words) > 1 else ("", [])
    if action in ("up", "exec", "logs", "restart", "stop", "start", "ps", "run"):
        named = [w for w in _drop_placeholders(rest) if not w.startswith("-")]
        if action in ("exec", "run"):
            named = named[:1]  # then the command run in the container
        for name in named:
            assert name in services, f"{command}: no service {name!r} in docker-compose.yml ({sorted(services)})"


# -- tests --------------------------------------------------------------------------------------


def test_the_documents_hold_commands_of_every_kind():
    programs = {c.program for c in ALL_COMMANDS}
    assert {"music-platform", "dg", "make", "pytest"} <= programs, programs
    assert len(ALL_COMMANDS) > 40, "the extraction found too few commands: is the parser broken?"


def test_extraction_of_shell_lines():
    block = "\n".join(
        ['A=1 B="x y" .venv/bin/music-platform demo \\', "    --users 2 # note", "cat <<'EOF'", "make nothing", "EOF"]
        + ["ls | make dev"]
    )
    words = [w for _, line in _shell_lines(block) for w in _words(line)]
    assert ["cat"] in words and ["make", "dev"] in words and ["make", "nothing"] not in words
    assert [".venv/bin/music-platform", "demo", "--users", "2"] in words


SUPERSEDED = {("dev",): "dg dev", ("asset", "materialize"): "dg launch --assets"}


def test_the_documents_use_the_current_dagster_commands():
    """`dg dev` and `dg launch` (Dagster 1.13), not the superseded `dagster dev` and `dagster asset
    materialize`, in every documented command and in `make dev` (issue 16)."""
    stale = [
        f"{command} -> {current}"
        for command in ALL_COMMANDS
        if command.program == "dagster"
        for words, current in SUPERSEDED.items()
        if tuple(w for w in command.words[1:] if not w.startswith("-"))[: len(words)] == words
    ]
    assert not stale, f"superseded commands in the documents: {stale}"
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^dev:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and re.search(r"\bdg dev\b", recipe.group(1)) and "dagster dev" not in recipe.group(1)
    for words in (w.split() for w in re.findall(r"\bdg dev[^\n]*", recipe.group(1))):
        check_dg(DocCommand("Makefile", 0, " ".join(words), tuple(w for w in words if "$" not in w)))


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=str)
def test_documented_command_names_real_commands_and_options(command, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # relative paths (-w workspace.yaml) as in the docs
    program = command.program
    if program == "music-platform":
        check_music_platform(command)
    elif program == "dagster":
        check_dagster(command)
    elif program == "dg":
        check_dg(command)
    elif program == "dbt":
        check_dbt(command, monkeypatch)
    elif program == "make":
        check_make(command)
    elif program == "pytest":
        check_pytest(command, list(command.words[1:]))
    elif program in ("python", "python3"):
        check_python(command, monkeypatch)
    elif program == "docker":
        check_docker(command)


REPO_PATH = re.compile(r"^(?:music_platform|music_platform_tests|dbt|deploy|benchmarks|docs|\.ci)/[\w./-]*$")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_repository_paths_quoted_in_the_documents_exist(document):
    """`music_platform/sources/http.py`, `deploy/dagster.yaml`, … name files that are there."""
    missing = []
    for quoted in re.findall(r"`([^`\s]+)`", document.read_text(encoding="utf-8")):
        path = quoted.split("::")[0].rstrip(":,")
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if REPO_PATH.match(path) and ("." in name or path.endswith("/")):  # a file or folder, not a tag
            if not (PROJECT_ROOT / path).exists():
                missing.append(quoted)
    assert not missing, f"{document.name} names files that do not exist: {missing}"


def test_test_names_quoted_in_the_documents_exist():
    """`test_...` names the documents give as proof are tests that exist (not renamed away)."""
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "music_platform_tests").glob("*.py"))
    defined = set(re.findall(r"def (test_\w+)", tests))
    package = _package_source()
    missing = set()
    for document in DOCUMENTS:
        for name in re.findall(r"`(test_\w+)`", document.read_text(encoding="utf-8")):
            if name not in defined and not re.search(rf"\b{name}\b", package):  # e.g. a `test_fraction` parameter
                missing.add(f"{document.name}: {name}")
    assert not missing, f"the documents name tests that do not exist: {sorted(missing)}"


def test_a_wrong_option_or_subcommand_is_caught():
    """The checks above would notice drift: a renamed option, subcommand, target or asset."""
    bad = [
        DocCommand("x", 1, "", ("music-platform", "demo", "--listeners", "5")),
        DocCommand("x", 1, "", ("music-platform", "collect", "deezer")),
        DocCommand("x", 1, "", ("music-platform", "demo", "--users", "many")),
        DocCommand("x", 1, "", ("dagster", "asset", "materialize", "-m", "m", "--partitions", "2025-01-01")),
        DocCommand("x", 1, "", ("dagster", "asset", "materialize", "-m", "m", "--select", "raw/no_such_table")),
        DocCommand("x", 1, "", ("make", "deploy")),
        DocCommand("x", 1, "", ("dg", "launch", "--assets", "raw/no_such_table")),
        DocCommand("x", 1, "", ("dg", "launch", "--assets", "raw/lastfm_scrobbles", "--partitions", "2025-01-01")),
        DocCommand(
            "x", 1, "", ("dg", "launch", "--assets", "raw/lastfm_scrobbles", "--config-json", '{"ops": {"no_op": {}}}')
        ),
        DocCommand("x", 1, "", ("dg", "dev", "--workspace-file", "workspace.yaml")),
    ]
    checkers = {
        "music-platform": check_music_platform,
        "dagster": check_dagster,
        "make": check_make,
        "dg": check_dg,
    }
    for command in bad:
        checker = checkers[command.program]
        with pytest.raises(AssertionError):
            checker(command)


if __name__ == "__main__":
    for found in ALL_COMMANDS:
        print(found.program.ljust(15), found)
