"""The main job as one library call: ingest traces, compute the waterfall, and gather what a report shows.

``diagnose`` (traces in) and ``diagnose_dataset`` (a dataset in) return one ``Diagnosis``; the CLI, the report and
the notebook all take that object, so a figure shown in two places is computed once. A failure of an optional part
(recommendations) is a note in the result, never the end of the main job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, compute_waterfall
from zumik_cli.core.errors import ZumikError
from zumik_cli.core.memory import release_freed
from zumik_cli.core.redact import redact
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.divergence import CAUSES, compute_divergence
from zumik_cli.diagnosis.recommend import compute_recommendations
from zumik_cli.diagnosis.volatility import contexts, diff_span
from zumik_cli.ingest.pipeline import IngestSummary, ingest
from zumik_cli.replay.records import capacity_points, latest_by_policy, replay_runs, replayed_on
from zumik_cli.routing.decisions import policy_comparison

REPORT_BREAKDOWNS = ("model", "alias", "release", "tenant", "session")
TOP_RECOMMENDATIONS = 3


@dataclass(frozen=True)
class Diagnosis:
    """One dataset's diagnosis: every value that `diagnose`, `report` and the notebook show."""

    dataset: Dataset
    waterfall: Waterfall
    ingest: IngestSummary | None = None
    simulation: dict[str, Any] | None = None
    policies: list[dict[str, Any]] | None = None
    replays: list[dict[str, Any]] | None = None
    replay_points: list[dict[str, Any]] | None = None
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] | None = None
    notes: tuple[str, ...] = ()

    @property
    def manifest(self) -> dict[str, Any]:
        return self.dataset.manifest.to_json()

    @property
    def title(self) -> str:
        return f"Prefix-cache reuse: {Path(self.dataset.root).name}"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.waterfall.summary,
            "ingest": self.ingest.to_json() if self.ingest else None,
            "simulation": self.simulation,
            "replayed": {
                "policies": {row["policy"]: row["measured"] for row in self.policies or [] if "measured" in row},
                "capacity_points": self.replay_points or [],
            },
            "recommendations": self.recommendations,
            "notes": list(self.notes),
        }


def diagnose(
    paths: Sequence[Path],
    data: Path,
    options: WaterfallOptions | None = None,
    *,
    format: str | None = None,
    releases: Path | None = None,
    include_text: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Diagnosis:
    """Ingest ``paths`` into the dataset at ``data`` and diagnose it (on Spark when ``options.engine`` says so and
    the dataset is new; inputs a dataset already holds are skipped by the embedded ingest)."""
    if options is not None and options.engine == "spark" and not (Path(data) / "manifest.json").exists():
        from zumik_cli.ingest.spark_ingest import ingest_spark

        summary = ingest_spark(list(paths), data, format=format)
    else:
        summary = ingest(list(paths), data, format=format, progress=progress)
    release_freed()  # what ingest freed, before the waterfall's peak
    return replace(
        diagnose_dataset(Dataset(data), options, releases=releases, include_text=include_text), ingest=summary
    )


def diagnose_dataset(
    dataset: Dataset,
    options: WaterfallOptions | None = None,
    *,
    releases: Path | None = None,
    include_text: bool = False,
) -> Diagnosis:
    """The waterfall of a dataset with the report's breakdowns, its recommendations, the routing simulation when a
    release history is given (else the dataset's last one), its last replay, and prompt edits when asked for."""
    options = options or WaterfallOptions()
    if not options.by:
        options = replace(options, by=REPORT_BREAKDOWNS)
    waterfall = compute_waterfall(dataset, options)
    notes: list[str] = []
    simulation = None
    if releases is not None:
        from zumik_cli.routing.releases import load_history
        from zumik_cli.routing.simulate import simulate

        simulation = simulate(dataset.root, load_history(releases)).to_json()
        dataset = Dataset(dataset.root)  # the simulation replaced parts the old manifest lists: read the new one
    try:
        recommendations = compute_recommendations(dataset, options, baseline=waterfall).to_json(
            limit=TOP_RECOMMENDATIONS
        )["recommendations"]
    except ZumikError as exc:
        recommendations = []
        notes.append(f"Recommendations skipped: {exc}")
    runs = replay_runs(dataset)
    return Diagnosis(
        dataset=dataset,
        waterfall=waterfall,
        simulation=simulation,
        policies=with_measured(policy_comparison(dataset), runs) or None,
        replays=last_replay(dataset),
        replay_points=capacity_points(runs) or None,
        recommendations=recommendations,
        samples=prompt_edits(dataset, waterfall) if include_text else None,
        notes=tuple(notes),
    )


def with_measured(policies: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each simulated policy's row with its latest replay beside it (``measured``, evidence ``replayed``), where one
    exists: the requests it covered, what the engine measured, on which engine and cache, and what the policy's
    simulation said of them."""
    latest = latest_by_policy(runs)
    rows = []
    for row in policies:
        run = latest.get(row["policy"])
        if run is None or run["measured_rate"] is None:
            rows.append(row)
            continue
        simulated, measured = run.get("simulated_rate"), run["measured_rate"]
        measured_row = {
            "rate": measured,
            "predicted_rate": run["predicted_rate"],
            "simulated_rate": simulated,
            "measured_minus_simulated_pp": round((measured - simulated) * 100, 4) if simulated is not None else None,
            "requests": run["measured_requests"],
            "release": run["release"],
            "targets": len(run.get("targets", [])),
            **replayed_on(run),
            "run_id": run["run_id"],
            "evidence": "replayed",
        }
        rows.append({**row, "measured": measured_row})
    return rows


def last_replay(dataset: Dataset) -> list[dict[str, Any]] | None:
    """The per-request rows of the dataset's latest replay run, in replay order, or None without one."""
    run = dataset.manifest.extra.get("replay", {}).get("run_id")
    if run is None:
        return None
    cursor = dataset.connect().execute(
        "SELECT trace_id, predicted_tokens, measured_tokens, prompt_tokens FROM replays WHERE run_id = ? "
        "ORDER BY position",
        [run],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()] or None


def prompt_edits(dataset: Dataset, waterfall: Waterfall | None = None) -> list[dict[str, Any]]:
    """Each break that edited a system prompt or a tool definition, most tokens lost first, with the changed span as
    it was and as it became, between the same few characters of context.

    Both texts are redacted whole before they are compared and cut, so that no cut can leave part of a key that
    redaction would no longer recognise."""
    breaks = sorted(compute_divergence(dataset, waterfall=waterfall).breaks, key=lambda b: (-b.lost_tokens, b.trace_id))
    edits = [(b, span) for b in breaks for part in ("system", "tools") if (span := b.detail.get(part, {}).get("span"))]
    ids = sorted({block for _, span in edits for block in (span["old_block"], span["new_block"])})
    query = "SELECT block_id, text FROM blocks WHERE list_contains(?, block_id)"
    texts = dict(dataset.connect().execute(query, [ids]).fetchall()) if ids else {}
    samples = []
    for b, span in edits:
        old, new = redact(texts.get(span["old_block"]) or ""), redact(texts.get(span["new_block"]) or "")
        diff = diff_span(old, new)
        before, after = contexts(new, diff.start, diff.new_end)
        heading = f"{CAUSES[b.cause]}, {b.lost_tokens:,} tokens lost; {span['where']} changed at character "
        samples.append(
            {
                "trace_id": b.trace_id,
                "heading": f"{heading}{span['offset']:,}",
                "before": before,
                "old": old[diff.start : diff.old_end],
                "new": new[diff.start : diff.new_end],
                "after": after,
            }
        )
    return samples
