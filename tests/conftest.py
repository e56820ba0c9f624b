"""Shared fixtures. The report ones build inputs shaped as docs/waterfall-json.md describes."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

if TYPE_CHECKING:
    from zumik_cli.render.report.page import ReportInputs

REPORT_GENERATED_AT = "2026-06-12T09:30:00Z"
SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"


def _breakdown_rows(prefix: str, count: int, scale: int) -> list[dict[str, Any]]:
    """Deterministic, internally consistent breakdown rows, sorted by missed tokens as the producer sorts."""
    rows = []
    for index in range(count):
        total = scale * (count - index) + 7_919 * index
        eligible = total * 83 // 100 - index * 311
        candidate = eligible * 86 // 100
        realized = candidate * (60 + index % 30) // 100
        rows.append(
            {
                "key": f"{prefix}{index:03d}" if count > 1 else prefix,
                "requests": 12 + (count - index) * 3,
                "total": total,
                "eligible": eligible,
                "candidate": candidate,
                "realized": realized,
                "missed": candidate - realized,
            }
        )
    return sorted(rows, key=lambda row: -row["missed"])


def report_waterfall_dict() -> dict[str, Any]:
    """A realistic waterfall of a coding-agent fleet on two providers, shaped as the JSON doc says."""
    total, eligible, candidate, realized = 48_213_907, 40_017_543, 34_231_874, 25_071_231
    over_tokens = 12_400
    missed = candidate - realized + over_tokens
    return {
        "requests": 1_842,
        "period": {"first": "2026-06-01T00:00:12Z", "last": "2026-06-07T23:58:40Z", "requests_without_time": 0},
        "total_input_tokens": {"tokens": total, "rate": 1.0, "evidence": "measured"},
        "eligible": {"tokens": eligible, "rate": round(eligible / total, 4), "evidence": "simulated"},
        "candidate": {"tokens": candidate, "rate": round(candidate / total, 4), "evidence": "simulated"},
        "realized": {"tokens": realized, "rate": round(realized / total, 4), "evidence": "measured"},
        "missed": {"tokens": missed, "rate": round(missed / total, 4), "evidence": "simulated"},
        "request_weighted": {"eligible": 0.79, "candidate": 0.66, "realized": 0.49, "missed": 0.18},
        "over_realized": {
            "requests": 3,
            "tokens": over_tokens,
            "evidence": "measured",
            "explanation": "realized above candidate: the provider served more than the rules pack allows",
        },
        "cache_writes": {"tokens": 6_104_220, "evidence": "measured"},
        "cross_tenant_opportunity": {
            "tokens": 512_770,
            "evidence": "simulated",
            "note": "shared with another tenant; isolation forbids reuse",
        },
        "causes": [
            {
                "stage": "eligible->candidate",
                "cause": "other_model",
                "label": "other model or target",
                "tokens": 2_103_118,
                "requests": 211,
                "evidence": "simulated",
            },
            {
                "stage": "eligible->candidate",
                "cause": "other_tenant",
                "label": "other tenant",
                "tokens": 412_890,
                "requests": 37,
                "evidence": "simulated",
            },
            {
                "stage": "eligible->candidate",
                "cause": "expired",
                "label": "expired (TTL)",
                "tokens": 1_904_377,
                "requests": 164,
                "evidence": "simulated",
            },
            {
                "stage": "eligible->candidate",
                "cause": "below_minimum",
                "label": "below minimum",
                "tokens": 301_224,
                "requests": 402,
                "evidence": "simulated",
            },
            {
                "stage": "eligible->candidate",
                "cause": "granularity",
                "label": "granularity or breakpoints",
                "tokens": 1_064_060,
                "requests": 1_190,
                "evidence": "estimated",
            },
            {
                "stage": "candidate->realized",
                "cause": "tools_changed",
                "label": "tools changed",
                "tokens": 3_120_554,
                "requests": 58,
                "evidence": "measured",
            },
            {
                "stage": "candidate->realized",
                "cause": "provider_miss_unexplained",
                "label": "provider miss (unexplained)",
                "tokens": 6_064_889,
                "requests": 233,
                "evidence": "measured",
            },
        ],
        "money": {
            "currency": "USD",
            "billed": 58.71,
            "without_cache": 126.03,
            "realized_savings": 67.32,
            "missed_savings": 24.77,
            "cache_write_cost": 6.41,
            "evidence": "estimated",
            "prices_as_of": "2026-06-01",
        },
        "capacity_curve": [
            {"capacity_tokens": 16_384, "rate": 0.09},
            {"capacity_tokens": 65_536, "rate": 0.22},
            {"capacity_tokens": 262_144, "rate": 0.41},
            {"capacity_tokens": 1_048_576, "rate": 0.58},
            {"capacity_tokens": 4_194_304, "rate": 0.68},
            {"capacity_tokens": 16_777_216, "rate": 0.705},
            {"capacity_tokens": None, "rate": 0.71},
        ],
        "ttl_sensitivity": [
            {"ttl_seconds": 300, "rate": 0.62},
            {"ttl_seconds": 3600, "rate": 0.69},
            {"ttl_seconds": 86_400, "rate": 0.705},
            {"ttl_seconds": None, "rate": 0.71},
        ],
        "breakdowns": {
            "model": [
                {
                    "key": "claude-sonnet-4-5",
                    "requests": 1_021,
                    "total": 29_880_112,
                    "eligible": 25_118_004,
                    "candidate": 21_040_551,
                    "realized": 14_610_220,
                    "missed": 6_430_331,
                },
                {
                    "key": "gpt-4.1",
                    "requests": 598,
                    "total": 14_102_556,
                    "eligible": 11_400_117,
                    "candidate": 9_911_003,
                    "realized": 7_902_310,
                    "missed": 2_008_693,
                },
                {
                    "key": "gpt-4.1-mini",
                    "requests": 223,
                    "total": 4_231_239,
                    "eligible": 3_499_422,
                    "candidate": 3_280_320,
                    "realized": 2_558_701,
                    "missed": 734_019,
                },
            ],
            "alias": [
                {
                    "key": "code.fast",
                    "requests": 1_244,
                    "total": 33_002_114,
                    "eligible": 27_700_410,
                    "candidate": 23_801_122,
                    "realized": 16_950_400,
                    "missed": 6_850_722,
                },
                {
                    "key": "support.default",
                    "requests": 598,
                    "total": 15_211_793,
                    "eligible": 12_317_133,
                    "candidate": 10_430_752,
                    "realized": 8_120_831,
                    "missed": 2_322_321,
                },
            ],
            "release": [
                {
                    "key": "alr_2026_06_09_003",
                    "requests": 802,
                    "total": 21_220_400,
                    "eligible": 17_900_020,
                    "candidate": 15_230_100,
                    "realized": 10_004_220,
                    "missed": 5_225_880,
                },
                {
                    "key": "alr_2026_05_28_001",
                    "requests": 442,
                    "total": 11_781_714,
                    "eligible": 9_800_390,
                    "candidate": 8_571_022,
                    "realized": 6_946_180,
                    "missed": 1_624_842,
                },
                {
                    "key": "alr_2026_04_30_002",
                    "requests": 598,
                    "total": 15_211_793,
                    "eligible": 12_317_133,
                    "candidate": 10_430_752,
                    "realized": 8_120_831,
                    "missed": 2_322_321,
                },
            ],
            "tenant": _breakdown_rows("tenant-", 4, 9_000_000),
            "session": _breakdown_rows("ses_7f3a", 45, 700_000),
        },
        "cannot_compute": [
            {
                "row": "eligible",
                "reason": "212 usage-only records (no content to compare): left out of eligible",
            },
        ],
        "rules": [
            {
                "name": "anthropic",
                "version": "2026.06",
                "effective_from": "2025-08-01",
                "source": "https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching",
            },
            {
                "name": "openai",
                "version": "2026.05",
                "effective_from": "2025-10-01",
                "source": "https://platform.openai.com/docs/guides/prompt-caching",
            },
        ],
        "options": {
            "rules": None,
            "rules_files": [],
            "ttl_seconds": None,
            "ttl_none": False,
            "ttl": "pack",
            "capacity_tokens": None,
            "policy": "recorded",
            "release": None,
            "what_if": False,
            "assumptions": ["recorded rules", "pack TTLs", "unbounded cache"],
        },
        "definitions": {
            "total_input_tokens": "Prompt tokens of every request in scope, as the provider reported them.",
            "eligible": "The longest token-exact prefix each request shares with any earlier request.",
            "candidate": "The part of eligible a cache could have served under the target's rules pack.",
            "realized": "Cache-read tokens reported by the provider or measured on replay.",
            "missed": "Candidate minus realized, per request, summed.",
        },
    }


def report_manifest_dict() -> dict[str, Any]:
    return {
        "zumik_version": "0.1.0",
        "schema_version": 3,
        "inputs": [
            {
                "path": "traces/agents-2026-06-10.jsonl",
                "format": "zumik-jsonl",
                "requests": 1_204,
                "sha256": "9f2c41d0a7b35e8e64c1f0d2b7a9e3c5d8f1a2b3c4d5e6f708192a3b4c5d6e7f",
            },
            {
                "path": "traces/gateway-litellm.jsonl",
                "format": "litellm",
                "requests": 638,
                "sha256": "0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef",
            },
        ],
    }


def report_policies_list() -> list[dict[str, Any]]:
    return [
        {
            "policy": "recorded",
            "cost": 58.71,
            "realized_rate": 0.52,
            "latency_ms": 1_840.0,
            "churn": 0.0,
            "evidence": "measured",
        },
        {
            "policy": "cheapest",
            "cost": 49.12,
            "realized_rate": 0.44,
            "latency_ms": 2_310.0,
            "churn": 0.41,
            "evidence": "simulated",
        },
        {
            "policy": "lowest_expected_latency",
            "cost": 71.90,
            "realized_rate": 0.47,
            "latency_ms": 1_320.0,
            "churn": 0.36,
            "evidence": "simulated",
        },
        {
            "policy": "cache_affinity",
            "cost": 47.05,
            "realized_rate": 0.64,
            "latency_ms": 1_910.0,
            "churn": 0.18,
            "evidence": "simulated",
        },
        {
            "policy": "reuse_aware",
            "cost": 42.38,
            "realized_rate": 0.68,
            "latency_ms": 1_880.0,
            "churn": 0.22,
            "evidence": "simulated",
        },
    ]


def report_replays_list() -> list[dict[str, Any]]:
    rows = []
    for index in range(60):
        prompt = 2_000 + (index * 1_337) % 30_000
        predicted = (prompt * (55 + index % 40) // 100) // 32 * 32
        measured = predicted if index % 7 else max(predicted - 32 * (1 + index % 5), 0)
        rows.append(
            {
                "trace_id": f"req_{index:04d}_b7e1",
                "predicted_tokens": predicted,
                "measured_tokens": measured,
                "prompt_tokens": prompt,
            }
        )
    return rows


HOSTILE_SCRIPT = "<script>window.__pwned=1</script>"
HOSTILE_ATTRIBUTE = '"><img src=x onerror=window.__pwned=1>'


def hostile(value: Any) -> Any:
    """The value with every string in it (at any depth) carrying both attack payloads; numbers untouched."""
    if isinstance(value, str):
        return f"{value}{HOSTILE_SCRIPT}{HOSTILE_ATTRIBUTE}"
    if isinstance(value, dict):
        return {key: hostile(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hostile(item) for item in value]
    return copy.deepcopy(value)


@pytest.fixture
def report_waterfall() -> dict[str, Any]:
    return report_waterfall_dict()


@pytest.fixture
def report_manifest() -> dict[str, Any]:
    return report_manifest_dict()


@pytest.fixture
def report_policies() -> list[dict[str, Any]]:
    return report_policies_list()


@pytest.fixture
def report_replays() -> list[dict[str, Any]]:
    return report_replays_list()


@pytest.fixture
def hostile_payloads() -> tuple[str, str]:
    return HOSTILE_SCRIPT, HOSTILE_ATTRIBUTE


@pytest.fixture
def hostile_report_inputs() -> ReportInputs:
    """Report inputs in which every string of every field carries both attack payloads."""
    from zumik_cli.render.report.page import ReportInputs  # here, so that tests of other modules need not load plotly

    return ReportInputs(
        waterfall=hostile(report_waterfall_dict()),
        manifest=hostile(report_manifest_dict()),
        generated_at=hostile(REPORT_GENERATED_AT),
        title=hostile("Hostile report"),
        policies=hostile(report_policies_list()),
        replays=hostile(report_replays_list()),
        include_text=True,
        samples=hostile([{"trace_id": "req_0001", "text": "system: you are a coding agent"}]),
    )


@pytest.fixture(scope="session")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportInputs]:
    """The report of the bundled sample traces with their release history, as `make demo` writes it, and its
    inputs."""
    from zumik_cli.diagnosis.diagnose import diagnose
    from zumik_cli.render.report.page import ReportInputs, write_report

    folder = tmp_path_factory.mktemp("sample-report")
    diagnosis = diagnose([SAMPLE_TRACES], folder / "data", releases=SAMPLE_TRACES / "releases.yaml")
    inputs = ReportInputs.of(diagnosis, REPORT_GENERATED_AT)
    return write_report(inputs, folder / "sample.html"), inputs


# --- the command line, with stdout and stderr apart ---------------------------------------------------------


def runner() -> CliRunner:
    """Separate stdout and stderr: click 8.2+ always does, older click needs ``mix_stderr=False``."""
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


# --- traces: hand-written fixtures and the real traces beside the checkout ---------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def real_data_path() -> Path:
    """``../shared/data/real`` beside the checkout: CI has it, a contributor's machine may not."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = real_data_path()
    if not path.is_dir():
        pytest.skip(f"real traces not found at {path} (CI puts shared/data/real beside the checkout)")
    return path


# --- CI runs every test: a heavy dependency missing there is a failure, never a quiet skip ------------------


def _missing_heavy_dependency(marker: str) -> str | None:
    import importlib.util
    import shutil

    if marker == "vllm" and importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (`make engines` installs it)"
    if marker == "browser":
        if shutil.which("chromium") is None:
            return "Debian's chromium is not installed (`make browser` installs it)"
        if importlib.util.find_spec("playwright") is None:
            return "playwright is not installed (`pip install -e '.[dev]'`)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    import os

    if not os.environ.get("CI"):
        return
    for marker in ("vllm", "browser"):
        if item.get_closest_marker(marker) is not None:
            missing = _missing_heavy_dependency(marker)
            if missing:
                pytest.fail(f"CI must run the {marker} tests, but {missing}")


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A standalone Spark master and two workers (separate JVMs) for the session; ``--engine spark`` runs on it."""
    import os

    import spark_cluster as cluster_module

    why = cluster_module.missing()
    if why:
        pytest.skip(why)
    cluster = cluster_module.Cluster(tmp_path_factory.mktemp("spark-cluster")).start()
    previous = os.environ.get("ZUMIK_SPARK_MASTER")
    os.environ["ZUMIK_SPARK_MASTER"] = cluster.url
    from zumik_cli.dataset import spark

    session = spark.session({"spark.executor.memory": cluster_module.EXECUTOR_MEMORY})
    try:
        yield cluster
    finally:
        session.stop()
        cluster.stop()
        if previous is None:
            os.environ.pop("ZUMIK_SPARK_MASTER", None)
        else:
            os.environ["ZUMIK_SPARK_MASTER"] = previous
