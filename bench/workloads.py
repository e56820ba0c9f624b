"""The benchmark's inputs: made by zumik's own generators, then written in each peer's format.

Content traces come from ``zumik synth`` (zumik JSONL); the same records are rewritten as the gateway CSV that
``llmtrafficlens profile`` reads (an OpenAI request body and response per row) and as the logged request bodies
that ``cacheeconomics analyze --from bodies`` reads. Content-free traces come from ``bench.mooncake`` and every
tool reads the same file. A "resend" variant sends every request k times (retries of the same call): the
history is resent k times as often while the unique content stays the same. Files are cached under
``bench/out/workloads`` by the parameters that made them.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec

from bench.mooncake import write_trace
from zumik_cli.synth.traffic import SynthConfig, write_jsonl

_decode = msgspec.json.Decoder().decode
_TRACE_ID = re.compile(rb'"trace_id":"([^"]*)"')


def mooncake(folder: Path, requests: int, seed: int = 0) -> Path:
    path = folder / f"mooncake-{requests}-s{seed}.jsonl"
    if not path.exists():
        write_trace(path, requests, seed)
    return path


def agents(folder: Path, sessions: int, seed: int = 0) -> Path:
    """``zumik synth`` traffic with this many sessions (about 0.5 MB of JSONL a session)."""
    path = folder / f"agents-{sessions}-s{seed}.jsonl"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(SynthConfig(seed=seed, sessions=sessions), path)
    return path


def resent(source: Path, times: int) -> Path:
    """Every record sent ``times`` times in a row (new trace ids): the same unique content, resent more."""
    path = source.with_name(f"{source.stem}-x{times}.jsonl")
    if times == 1:
        return source
    if not path.exists():
        temporary = path.with_name(f".{path.name}.tmp")
        with source.open("rb") as lines, temporary.open("wb") as out:
            for line in lines:
                out.write(line)
                for copy in range(1, times):
                    out.write(_TRACE_ID.sub(rb'"trace_id":"\1-r%d"' % copy, line, count=1))
        temporary.replace(path)
    return path


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(part.get("text", part.get("content", ""))) for part in content if isinstance(part, dict))
    return ""


def openai_body(record: dict[str, Any]) -> dict[str, Any]:
    """A zumik record's request as an OpenAI Chat Completions body (what a gateway logs)."""
    messages: list[dict[str, Any]] = []
    if record.get("system"):
        messages.append({"role": "system", "content": _text(record["system"])})
    for message in record.get("messages") or []:
        texts, calls = [], []
        for part in message.get("content") or []:
            kind = part.get("type")
            if kind == "text":
                texts.append(part["text"])
            elif kind == "tool_call":
                arguments = json.dumps(part.get("arguments"), sort_keys=True)
                calls.append(
                    {"id": part["id"], "type": "function", "function": {"name": part["name"], "arguments": arguments}}
                )
            elif kind == "tool_result":
                messages.append(
                    {"role": "tool", "tool_call_id": part["tool_call_id"], "content": _text(part["content"])}
                )
        if texts or calls:
            entry: dict[str, Any] = {"role": message["role"], "content": "".join(texts)}
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.get("name"),
                "description": t.get("description", ""),
                "parameters": t.get("input_schema", t.get("parameters", {})),
            },
        }
        for t in record.get("tools") or []
    ]
    body: dict[str, Any] = {"model": record.get("model"), "messages": messages}
    if tools:
        body["tools"] = tools
    if record.get("session_id"):
        body["user"] = record["session_id"]
    return body


def openai_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    if "prompt_tokens" in usage:
        return usage
    prompt = sum(usage.get(k) or 0 for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.get("output_tokens") or 0,
        "prompt_tokens_details": {"cached_tokens": usage.get("cache_read_input_tokens") or 0},
    }


def gateway_csv(source: Path) -> Path:
    """The records as llmtrafficlens' ``openai-gateway`` CSV: timestamp, model_name, request_json, response_json."""
    path = source.with_suffix(".gateway.csv")
    if not path.exists():
        csv.field_size_limit(sys.maxsize)
        temporary = path.with_name(f".{path.name}.tmp")
        with source.open("rb") as lines, temporary.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["timestamp", "model_name", "status_code", "request_json", "response_json"])
            for line in lines:
                record = _decode(line)
                response = {"usage": openai_usage(record.get("usage")), "model": record.get("model")}
                writer.writerow(
                    [
                        record["timestamp"],
                        record.get("model"),
                        200,
                        json.dumps(openai_body(record), ensure_ascii=False),
                        json.dumps(response),
                    ]
                )
        temporary.replace(path)
    return path


def bodies_jsonl(source: Path) -> Path:
    """The records as logged request bodies (cacheeconomics ``--from bodies``): request, response, provider."""
    path = source.with_suffix(".bodies.jsonl")
    if not path.exists():
        temporary = path.with_name(f".{path.name}.tmp")
        encode = msgspec.json.encode
        with source.open("rb") as lines, temporary.open("wb") as out:
            for line in lines:
                record = _decode(line)
                body = {k: record[k] for k in ("model", "system", "tools", "messages") if k in record}
                row = {
                    "request": body,
                    "response": {"usage": record.get("usage"), "model": record.get("model")},
                    "startTime": record.get("timestamp"),
                    "model": record.get("model"),
                    "custom_llm_provider": record.get("provider"),
                    "metadata": {"tenant": record.get("tenant")},
                }
                out.write(encode(row) + b"\n")
        temporary.replace(path)
    return path
