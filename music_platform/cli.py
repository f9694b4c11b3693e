"""The ``music-platform`` command line (public names in PRODUCT.md).

Each command parses its options here and hands over to its domain module, imported inside
the command so that ``music-platform --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="music-platform",
    help="Listening data to personalised music recommendations (Dagster + dbt + LightFM).",
    no_args_is_help=True,
    add_completion=False,
    context_settings=HELP_OPTIONS,
)
model_app = typer.Typer(help="Model versions: list them, roll back the published one.", no_args_is_help=True)
collect_app = typer.Typer(help="Standalone collectors: timestamped JSON into data/external/.", no_args_is_help=True)
app.add_typer(collect_app, name="collect")
app.add_typer(model_app, name="model")


class _Options:
    """What the root options asked for, read by ``main`` after the command has ended."""

    debug = False


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"music-platform {version('music-platform')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error (also MUSIC_PLATFORM_LOG_LEVEL=DEBUG).")
    ] = False,
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Listening data to personalised music recommendations (Dagster + dbt + LightFM)."""
    from music_platform.config import environment
    from music_platform.runs.signals import stop_on_sigterm

    _Options.debug = debug or environment().get("MUSIC_PLATFORM_LOG_LEVEL", "").strip().upper() == "DEBUG"
    stop_on_sigterm()  # SIGTERM stops every command as cleanly as Ctrl-C does


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Synthetic listeners to generate.")] = 2000,
    days: Annotated[int, typer.Option(help="Days of listening history (daily partitions up to yesterday, UTC).")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic world; the same seed gives the same data.")] = 42,
) -> None:
    """Materialise the whole asset graph on the embedded warehouse with synthetic data."""
    from music_platform.demo import run_demo
    from music_platform.runs.signals import Interrupted, exit_now

    try:
        code = run_demo(users=users, days=days, seed=seed)
    except Interrupted as interrupted:
        typer.echo(f"demo interrupted: {interrupted}", err=True)
        exit_now(interrupted.exit_code)  # the abandoned run thread must not delay the exit
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    access_log: Annotated[
        Optional[bool],
        typer.Option(
            "--access-log/--no-access-log",
            help="JSON access log on stdout (default: MUSIC_PLATFORM_ACCESS_LOG, else on).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve recommendations over HTTP from the latest published model version."""
    from music_platform.serving.server import run_server

    run_server(host=host, port=port, workers=workers, access_log=access_log)


@app.command("check-apis")
def check_apis() -> None:
    """Connection test and response-format validation of the configured APIs."""
    from music_platform.config import get_settings
    from music_platform.sources.check_apis import run_check_apis

    raise typer.Exit(run_check_apis(get_settings()))


@app.command("generate-fake-data")
def generate_fake_data(
    users: Annotated[int, typer.Option(help="Synthetic listeners.")] = 200,
    days: Annotated[int, typer.Option(help="Days of history, ending yesterday (UTC).")] = 7,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same files.")] = 42,
    output_dir: Annotated[Optional[Path], typer.Option(help="Default: <data dir>/external/synthetic.")] = None,
) -> None:
    """Write a synthetic world as Last.fm-shaped JSON and a Kaggle-shaped CSV."""
    from music_platform.config import get_settings
    from music_platform.sources.synthetic.export import export_fake_data

    settings = get_settings()
    out = output_dir or settings.external_dir / "synthetic"
    summary = export_fake_data(out, users=users, days=days, seed=seed)
    for name, value in summary.items():
        typer.echo(f"{name}: {value}")


@collect_app.command("lastfm")
def collect_lastfm(
    users: Annotated[Optional[str], typer.Option(help="Comma-separated usernames (default: LASTFM_USERS).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Start (inclusive), ISO date or datetime, UTC.")] = None,
    until: Annotated[Optional[str], typer.Option(help="End (exclusive), ISO date or datetime, UTC.")] = None,
) -> None:
    """Collect Last.fm scrobbles, profiles, charts and tags into data/external/lastfm/."""
    from music_platform.config import get_settings
    from music_platform.sources.lastfm.collector import collect_lastfm as run

    raise typer.Exit(run(get_settings(), users=users, since=since, until=until))


@collect_app.command("spotify")
def collect_spotify(
    track_ids: Annotated[
        Optional[str], typer.Option(help="Comma-separated Spotify track ids (default: tracks in the warehouse).")
    ] = None,
) -> None:
    """Collect Spotify track/artist metadata and audio features into data/external/spotify/."""
    from music_platform.config import get_settings
    from music_platform.sources.spotify.collector import collect_spotify as run

    raise typer.Exit(run(get_settings(), track_ids=track_ids))


@app.command()
def benchmark(
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "hetrec-lastfm-2k",
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the dataset files.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds of the random splits.")] = "1,2,3",
    models: Annotated[Optional[str], typer.Option(help="Comma-separated models (default: all).")] = None,
    k: Annotated[int, typer.Option(help="Cut-off of the ranking metrics.")] = 10,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the results to this JSON file.")
    ] = None,
) -> None:
    """Evaluate the recommender against baselines on a dataset and print the table."""
    from music_platform.recommender.benchmark import run_benchmark

    raise typer.Exit(
        run_benchmark(dataset=dataset, data_dir=data_dir, seeds=seeds, models=models, k=k, json_path=json_path)
    )


@model_app.command("list")
def model_list() -> None:
    """Every model version: status, which one is live, held-out metrics and the gate's decision and why."""
    from music_platform.config import get_settings
    from music_platform.recommender.registry import ModelRegistry, describe_versions

    registry = ModelRegistry(get_settings().models_dir)
    if not registry.list_versions():
        typer.echo("no model versions yet: materialise ml/lightfm_model (music-platform demo, or the Dagster UI)")
        return
    for line in describe_versions(registry):
        typer.echo(line)


@model_app.command("rollback")
def model_rollback() -> None:
    """Retire the published model version; the previously published one becomes live again."""
    from music_platform.config import get_settings
    from music_platform.recommender.publication import rollback
    from music_platform.recommender.registry import ModelRegistry, RegistryError
    from music_platform.warehouse import connect_warehouse

    settings = get_settings()
    try:
        retired, live = rollback(connect_warehouse(settings), ModelRegistry(settings.models_dir))
    except RegistryError as exc:
        message = str(exc)  # the registry's messages already say "cannot / nothing to roll back"
        typer.echo(message if "roll back" in message else f"cannot roll back: {message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"retired {retired.version}; {live.version} is live again (the service switches on its next poll)")


def main() -> None:
    """The console entry point: an operator error (a setting, an unreachable warehouse, refused
    credentials) is one line on stderr and exit code 1; ``--debug`` adds the traceback."""
    from music_platform.operator_errors import OPERATOR_ERRORS, operator_message

    try:
        app()
    except OPERATOR_ERRORS as error:
        if _Options.debug:
            raise
        typer.echo(f"music-platform: {operator_message(error)} (--debug shows the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
