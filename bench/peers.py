"""The tools zumik is compared with, how each is installed and invoked, and where its headline figure lies.

Peers live in their own virtual environment (``bench/.venv-peers``), installed by the harness with pinned
versions and never a dependency of zumik. Each tool reads the workload in its own format (``workloads``) and
reports one headline reuse figure, read back from its own output. How far each figure is comparable with
zumik's is written in ``COMPARABLE`` and in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEER_VERSIONS = {"llmtrafficlens": "0.13.4", "aiperf": "0.13.0", "cacheeconomics": "0.2.1"}
ROOT = Path(__file__).resolve().parent
PEERS_VENV = ROOT / ".venv-peers"


def install_peers(venv: Path = PEERS_VENV) -> Path:
    """Create the peers' venv and install the pinned versions (skipped when they are already there)."""
    python = venv / "bin" / "python"
    wanted = [f"{name}=={version}" for name, version in PEER_VERSIONS.items()]
    if python.exists():
        listed = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
        if all(spec.lower() in listed for spec in wanted):
            return venv
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *wanted], check=True)
    return venv


@dataclass(frozen=True)
class Tool:
    name: str
    kinds: tuple[str, ...]  # "mooncake" (content-free) and/or "content"
    command: Callable[[dict[str, Path], Path], list[str]]
    headline: Callable[[Path, str], dict[str, Any]]


def _zumik_bin() -> str:
    return str(Path(sys.executable).with_name("zumik"))


def _peer(name: str) -> str:
    return str(PEERS_VENV / "bin" / name)


def _zumik_command(inputs: dict[str, Path], work: Path) -> list[str]:
    source = inputs["zumik"]
    return [
        _zumik_bin(),
        "diagnose",
        str(source),
        "--data",
        str(work / "data"),
        "--report",
        str(work / "r.html"),
        "--json",
    ]


def _zumik_headline(work: Path, stdout: str) -> dict[str, Any]:
    summary = json.loads((work / "stdout.txt").read_text())
    out = {
        "eligible": summary["eligible"]["rate"],
        "eligible_request_weighted": summary["request_weighted"]["eligible"],
        "realized": summary["realized"]["rate"],
        "tokenized_chars": summary["ingest"].get("tokenized_chars"),
        "unique_blocks": summary["ingest"]["unique_blocks"],
        "ingest_timings": summary["ingest"].get("timings"),
    }
    return out


def _ltl_command(inputs: dict[str, Path], work: Path) -> list[str]:
    if "gateway_csv" in inputs:
        fmt, source = "openai-gateway", inputs["gateway_csv"]
    else:
        fmt, source = "mooncake", inputs["zumik"]
    salt = work / "salt"
    salt.write_bytes(secrets.token_bytes(32))
    os.chmod(salt, 0o600)
    return [_peer("llmtrafficlens"), "profile", "--format", fmt, "--warmup", "0", "--salt-file", str(salt), "-o",
            str(work / "ltl"), str(source)]  # fmt: skip


def _ltl_headline(work: Path, stdout: str) -> dict[str, Any]:
    profile = json.loads((work / "ltl.json").read_text())
    curve = profile["reuse_potential"]["curve"]
    return {"hit_rate_unbounded": curve[-1]["hit_rate"]}


def _aiperf_command(inputs: dict[str, Path], work: Path) -> list[str]:
    return [_peer("aiperf"), "analyze-trace", str(inputs["zumik"]), "--output-file", str(work / "aiperf.json")]


def _aiperf_headline(work: Path, stdout: str) -> dict[str, Any]:
    stats = json.loads((work / "aiperf.json").read_text())
    return {"cache_hit_rate_request_weighted": stats["cache_hit_rate"]}


def _ce_command(inputs: dict[str, Path], work: Path) -> list[str]:
    key = work / "key"
    key.write_text(secrets.token_hex(32))
    os.chmod(key, 0o600)
    return [_peer("cacheeconomics"), "analyze", "--from", "bodies", "--key-file", str(key), str(inputs["bodies"])]


def _ce_headline(work: Path, stdout: str) -> dict[str, Any]:
    match = re.search(r"input from cache\s+(\d+(?:\.\d+)?)%", (work / "stdout.txt").read_text())
    return {"input_from_cache": float(match.group(1)) / 100 if match else None}


TOOLS = {
    "zumik": Tool("zumik", ("mooncake", "content"), _zumik_command, _zumik_headline),
    "llmtrafficlens": Tool("llmtrafficlens", ("mooncake", "content"), _ltl_command, _ltl_headline),
    "aiperf": Tool("aiperf", ("mooncake",), _aiperf_command, _aiperf_headline),
    "cacheeconomics": Tool("cacheeconomics", ("content",), _ce_command, _ce_headline),
}

# Which zumik figure each peer's headline is set beside, and why it is (or is not) the same quantity.
COMPARABLE = {
    "llmtrafficlens": {
        "mooncake": (
            "eligible",
            "Same definition up to block rounding: token share of input found in an unbounded cache of earlier "
            "blocks (run with --warmup 0, so the whole log counts as zumik's does). It counts every hit block as "
            "512 tokens where zumik counts a last partial block at its real length.",
        ),
        "content": (
            "eligible",
            "Not the same: it cuts the prompt text into 16-token blocks of 4 characters a token (no tokenizer) "
            "and matches text across every model and wire format, where zumik matches exact tokens per "
            "materialization family. Close on one-format traffic, apart where formats mix.",
        ),
    },
    "aiperf": {
        "mooncake": (
            "eligible_request_weighted",
            "Request-weighted mean of each request's share of leading hash blocks seen before (infinite cache), "
            "in file order: zumik's request-weighted eligible, except that it weights blocks, not tokens.",
        ),
    },
    "cacheeconomics": {
        "content": (
            "realized",
            "Input from cache: cache-read tokens the provider reported over input tokens, i.e. zumik's realized "
            "(measured) row, not its eligible or candidate: it does not compute what could have been reused.",
        ),
    },
}
