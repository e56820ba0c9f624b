"""Commands for alias releases, routing simulation and explanations: `zumik releases ...`, `simulate`, `explain`.

Each command parses its options, calls one core function and renders the result (tables through
``render.terminal.releases``, ``--json`` as data on stdout); errors become one ``Error:`` line through
``handles_errors``. ``zumik_cli.cli`` registers them with ``register(app)``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from zumik_cli.cli.options import DataOpt, JsonOpt, err, handles_errors, out, print_json
from zumik_cli.core.errors import ReleaseError
from zumik_cli.render.terminal import releases as terminal_releases

if TYPE_CHECKING:
    from zumik_cli.routing.releases import History

ReleasesOpt = Annotated[
    Path | None, typer.Option("--releases", "-r", help="Alias release history you keep (YAML, docs/releases.md).")
]
DataOrNone = Annotated[
    Path | None,
    typer.Option("--data", "-d", help="Dataset folder: the releases it recorded, or the dataset to verify against."),
]

releases_app = typer.Typer(
    help="Alias releases: list, show, verify and derive immutable releases from a history file or a dataset.",
    no_args_is_help=True,
)


def _history(releases: Path | None, data: Path | None, *, required: bool = True) -> History:
    """The history file when given, else the releases the dataset recorded; an empty history when none is
    ``required`` (the log alone says where each request went)."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.routing.release_store import recorded_history
    from zumik_cli.routing.releases import load_history

    if releases is not None:
        return load_history(releases)
    if data is not None:
        history = recorded_history(Dataset(data))
        if not len(history) and required:
            raise ReleaseError(
                f"{data} has recorded no releases yet: pass --releases FILE (`zumik simulate` records them)"
            )
        return history
    raise ReleaseError("pass --releases FILE (the history you keep) or --data DIR (the releases a dataset recorded)")


@releases_app.command("list")
@handles_errors
def list_releases(
    releases: ReleasesOpt = None,
    data: DataOrNone = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Only the releases of this alias.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List releases in creation order: alias, what each supersedes, its policy, first target and digest."""
    from zumik_cli.routing.releases import describe

    history = _history(releases, data)
    ordered = sorted(history.releases, key=lambda r: (r.created_ts, r.id))
    rows = [describe(r) for r in ordered if alias is None or r.alias == alias]
    if as_json:
        print_json(rows)
    else:
        terminal_releases.releases(out, rows, f"Releases in {history.source}")


@releases_app.command()
@handles_errors
def show(
    release_id: Annotated[str, typer.Argument(help="Release id, e.g. alr_2026_06_09_003.")],
    releases: ReleasesOpt = None,
    data: DataOrNone = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one release: policy, constraints, targets with prices and latency profile, digest."""
    from zumik_cli.routing.releases import describe

    doc = describe(_history(releases, data).get(release_id))
    if as_json:
        print_json(doc)
    else:
        terminal_releases.release(out, doc)


@releases_app.command()
@handles_errors
def verify(
    releases: ReleasesOpt = None,
    data: DataOrNone = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a history (ids, digests, supersedes chains); with --data, that no release the dataset knows changed."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.routing.release_store import verify as verify_history

    dataset = Dataset(data) if data is not None else None
    report = verify_history(_history(releases, data), dataset if releases is not None else None)
    if as_json:
        print_json(report.to_json())
    else:
        terminal_releases.verification(out, report.to_json())
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        more = f" ({len(errors) - 1} more above)" if len(errors) > 1 else ""
        raise ReleaseError(f"release {errors[0].release}, field {errors[0].field}: {errors[0].message}{more}")


@releases_app.command()
@handles_errors
def new(
    releases: Annotated[Path, typer.Option("--releases", "-r", help="The history file to append to.")],
    base: Annotated[
        str | None, typer.Option("--from", help="Release to derive from (default: --alias's latest).")
    ] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Derive from this alias's latest release.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A change, PATH=VALUE, e.g. targets[0].model_revision=rev-2 (repeatable)."),
    ] = None,
    created_at: Annotated[
        str | None, typer.Option("--created-at", help="Creation time, ISO 8601 with zone (default: now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Derive a release from an existing one with changes and append it with the next id (nothing is edited)."""
    from zumik_cli.routing.release_derivation import new_release, parse_assignment
    from zumik_cli.routing.releases import describe

    moment = None
    if created_at is not None:
        try:
            moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        except ValueError:
            raise ReleaseError(f"--created-at takes an ISO 8601 time, not {created_at!r}") from None
        if moment.tzinfo is None:
            raise ReleaseError(f"--created-at needs a time zone: {created_at}Z")
    changes = dict(parse_assignment(item) for item in set_ or [])
    release = new_release(releases, base=base, alias=alias, changes=changes, created_at=moment)
    doc = describe(release)
    if as_json:
        print_json(doc)
    else:
        terminal_releases.release(out, doc)
    err.print(f"Appended {release.id} (supersedes {release.supersedes}) to {releases}", highlight=False)


@handles_errors
def simulate(
    data: DataOpt = Path("data/zumik"),
    releases: ReleasesOpt = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Policy to simulate (repeatable; default: all). `recorded` always runs."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latency draws: the same seed gives the same numbers.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Simulate routing policies over the releases: cost, simulated reuse, latency and churn against recorded.

    Without a release history (none given, none recorded) every request stays where the log says it went, so only
    the recorded policy has choices to compare: its figures are the waterfall's."""
    from zumik_cli.routing.simulate import simulate as run_simulation

    result = run_simulation(data, _history(releases, data, required=False), policy, seed=seed).to_json()
    if as_json:
        print_json(result)
    else:
        terminal_releases.simulation(out, result)
    err.print(
        f"Decisions of {len(result['policies'])} policies written to {data} (run {result['run_id']})", highlight=False
    )


@handles_errors
def explain(
    trace_id: Annotated[str, typer.Argument(help="Trace id of the request to explain.")],
    data: DataOpt = Path("data/zumik"),
    releases: ReleasesOpt = None,
    policy: Annotated[str, typer.Option("--policy", "-p", help="Whose decision to explain.")] = "recorded",
    as_json: JsonOpt = False,
) -> None:
    """Explain one request: resolution record, reuse accounting, and a recomputation of the decision."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.diagnosis.explain import explain as run_explain
    from zumik_cli.routing.releases import load_history

    history = load_history(releases) if releases is not None else None
    result = run_explain(Dataset(data), trace_id, policy=policy, history=history).to_json()
    if as_json:
        print_json(result)
    else:
        terminal_releases.explanation(out, result)


def register(app: typer.Typer) -> None:
    """Add `releases ...`, `simulate` and `explain` to the main app."""
    app.add_typer(releases_app, name="releases")
    app.command("simulate")(simulate)
    app.command("explain")(explain)
