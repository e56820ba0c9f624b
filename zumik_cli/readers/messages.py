"""Turn OpenAI- and Anthropic-shaped prompts into canonical logical artifacts.

The same conversation written in either shape must give the same artifacts (hence the same snapshot id):
text parts, tool calls with canonical arguments, tool results under role ``tool``, tools and system first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from zumik_cli.core.media import media_artifact
from zumik_cli.core.memo import MISSING, Memo
from zumik_cli.core.model import Artifact, canonical_arguments, canonical_json

# Every call of an agent resends its tool definitions and earlier tool calls; their canonical JSON (key-sorted
# dumps, the slowest part of reading a record) is remembered by the record's own bytes, which msgspec writes
# fast and which determine the canonical form (equal bytes, equal value). Values msgspec cannot write, such as
# strings with lone surrogates, are converted every time.
_TOOLS: Memo[Artifact] = Memo(4096)
_ARGUMENTS: Memo[str] = Memo(1 << 16, weight_limit=1 << 26)
_encode = msgspec.json.encode


def _key(value: Any) -> bytes | None:
    try:
        return _encode(value)
    except (msgspec.EncodeError, UnicodeEncodeError, TypeError, ValueError, OverflowError):
        return None


def _arguments(arguments: Any) -> str:
    key: Any = arguments if isinstance(arguments, str) else _key(arguments)
    if key is None:
        return canonical_arguments(arguments)
    known = _ARGUMENTS.get(key)
    if known is MISSING:
        known = canonical_arguments(arguments)
        _ARGUMENTS.put(key, known, len(known))  # type: ignore[arg-type]
    return known  # type: ignore[return-value]


def _remembered_tool(shape: str, tool: dict[str, Any], build: Any) -> Artifact:
    key = _key(tool)
    if key is None:
        return build(tool)  # type: ignore[no-any-return]
    known = _TOOLS.get((shape, key))
    if known is MISSING:
        known = build(tool)
        _TOOLS.put((shape, key), known)  # type: ignore[arg-type]
    return known  # type: ignore[return-value]


def _ttl(block: Any) -> str:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if not isinstance(control, dict):
        return ""
    return "1h" if control.get("ttl") == "1h" else "5m"


def _text_of(content: Any) -> str:
    """Flatten a string or a list of text-ish parts into one text (tool results, system blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text_of(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "content", "output", "result"):
            if key in content:
                return _text_of(content[key])
        return canonical_json(content)
    return str(content)


def tool_result_artifacts(content: Any, ref: str, cache_control: str = "") -> list[Artifact]:
    """A tool result's text, then each image or document it returned (a computer-use screenshot) as its own block."""
    if not isinstance(content, list):
        return [Artifact("tool_result", "tool", _text_of(content), ref=ref, cache_control=cache_control)]
    parts = [(p, media_artifact("tool", p) if isinstance(p, dict) else None) for p in content]
    media = [m for _, m in parts if m is not None]
    if not media:
        return [Artifact("tool_result", "tool", _text_of(content), ref=ref, cache_control=cache_control)]
    texts = [p for p, m in parts if m is None]
    # the breakpoint a result carries closes the last of its blocks
    result = Artifact("tool_result", "tool", _text_of(texts), ref=ref)
    *head, last = [result, *media]
    return [*head, dataclasses.replace(last, cache_control=cache_control)]


def tool_artifact(name: str, description: str, parameters: Any, cache_control: str = "") -> Artifact:
    body = canonical_json({"name": name, "description": description or "", "parameters": parameters or {}})
    return Artifact("tool", "tools", body, name=name, cache_control=cache_control)


def _openai_tool(tool: dict[str, Any]) -> Artifact:
    function = tool.get("function")
    fn: dict[str, Any] = function if isinstance(function, dict) else tool
    return tool_artifact(
        str(fn.get("name", "")), str(fn.get("description", "") or ""), fn.get("parameters"), _ttl(tool)
    )


def _anthropic_tool(t: dict[str, Any]) -> Artifact:
    return tool_artifact(
        str(t.get("name", "")),
        str(t.get("description", "") or ""),
        t.get("input_schema", t.get("parameters")),
        _ttl(t),
    )


def openai_tools(tools: Any) -> list[Artifact]:
    return [_remembered_tool("openai", t, _openai_tool) for t in tools or [] if isinstance(t, dict)]


def anthropic_tools(tools: Any) -> list[Artifact]:
    return [_remembered_tool("anthropic", t, _anthropic_tool) for t in tools or [] if isinstance(t, dict)]


def any_tools(tools: Any) -> list[Artifact]:
    """Tools in either wire shape: Anthropic's carry ``input_schema``, OpenAI's ``parameters``/``function``."""
    out: list[Artifact] = []
    for tool in tools or []:
        if isinstance(tool, dict) and "input_schema" in tool:
            out.extend(anthropic_tools([tool]))
        else:
            out.extend(openai_tools([tool]))
    return out


def system_artifacts(system: Any) -> list[Artifact]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [Artifact("system", "system", system)]
    if isinstance(system, list):
        return [Artifact("system", "system", _text_of(b), cache_control=_ttl(b)) for b in system]
    return [Artifact("system", "system", _text_of(system))]


def content_parts(role: str, content: Any) -> list[Artifact]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Artifact("text", role, content)] if content else []
    if not isinstance(content, list):
        return [Artifact("text", role, _text_of(content))]
    out = []
    for part in content:
        if isinstance(part, str):
            out.append(Artifact("text", role, part))
            continue
        if not isinstance(part, dict):
            continue
        kind, ttl = part.get("type", "text"), _ttl(part)
        if "type" not in part and "text" not in part:  # Gemini parts name their kind by their one key
            kind = "media"
        if kind in ("text", "input_text", "output_text"):
            out.append(Artifact("text", role, str(part.get("text", "")), cache_control=ttl))
        elif kind in ("tool_use", "tool_call"):
            args = part.get("input", part.get("arguments"))
            out.append(
                Artifact(
                    "tool_call",
                    "assistant",
                    _arguments(args),
                    name=str(part.get("name", "")),
                    ref=str(part.get("id", "")),
                    cache_control=ttl,
                )
            )
        elif kind == "tool_result":
            ref = str(part.get("tool_use_id", part.get("tool_call_id", "")))
            out.extend(tool_result_artifacts(part.get("content"), ref, ttl))
        elif kind in ("thinking", "redacted_thinking", "reasoning"):
            continue  # not resent as prompt text by the providers' own templates
        else:
            media = media_artifact(role, part, ttl)
            out.append(media or Artifact("media", role, canonical_json(part), cache_control=ttl))
    return out


def openai_messages(messages: Any) -> list[Artifact]:
    """Chat Completions messages: system/developer become system artifacts; tool messages tool results."""
    out: list[Artifact] = []
    for message in messages or []:
        if not isinstance(message, dict):
            raise ValueError("a message is not an object")
        role = message.get("role")
        if role in ("system", "developer"):
            out.extend(
                Artifact("system", "system", a.body, cache_control=a.cache_control)
                for a in content_parts("system", message.get("content"))
            )
        elif role == "tool" or role == "function":
            ref = str(message.get("tool_call_id", message.get("name", "")))
            out.append(
                Artifact("tool_result", "tool", _text_of(message.get("content")), ref=ref, cache_control=_ttl(message))
            )
        elif role in ("user", "assistant"):
            out.extend(content_parts(role, message.get("content")))
            for call in message.get("tool_calls") or []:
                fn = call.get("function", {}) if isinstance(call, dict) else {}
                out.append(
                    Artifact(
                        "tool_call",
                        "assistant",
                        _arguments(fn.get("arguments")),
                        name=str(fn.get("name", "")),
                        ref=str(call.get("id", "")),
                    )
                )
        else:
            raise ValueError(f"unknown message role {role!r}")
    return out


def anthropic_messages(messages: Any) -> list[Artifact]:
    """Messages API content blocks; tool_result blocks inside user turns become role ``tool``."""
    out: list[Artifact] = []
    for message in messages or []:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise ValueError("a message is not a {role: user|assistant, content} object")
        out.extend(content_parts(message["role"], message.get("content")))
    return out


def gemini_contents(body: dict[str, Any]) -> list[Artifact]:
    """Gemini ``generateContent`` bodies: ``systemInstruction`` and ``contents`` of typeless ``parts``."""
    system = body.get("systemInstruction", body.get("system_instruction"))
    out = [Artifact("system", "system", _text_of(system.get("parts") if isinstance(system, dict) else system))]
    out = out if out[0].body else []
    for content in body.get("contents") or []:
        if not isinstance(content, dict):
            raise ValueError("a Gemini content is not a {role, parts} object")
        role = "assistant" if content.get("role") == "model" else "user"
        for part in content.get("parts") or []:
            if not isinstance(part, dict):
                continue
            call = part.get("functionCall", part.get("function_call"))
            answer = part.get("functionResponse", part.get("function_response"))
            if isinstance(call, dict):
                out.append(
                    Artifact("tool_call", "assistant", _arguments(call.get("args")), name=str(call.get("name", "")))
                )
            elif isinstance(answer, dict):
                out.append(
                    Artifact(
                        "tool_result", "tool", canonical_json(answer.get("response")), ref=str(answer.get("name", ""))
                    )
                )
            else:
                out.extend(content_parts(role, [part]))
    return out


def ordered(tools: list[Artifact], system: list[Artifact], messages: list[Artifact]) -> tuple[Artifact, ...]:
    """Logical order: tools, then system instructions (wherever the log put them), then the conversation."""
    system = system + [a for a in messages if a.kind == "system"]
    return tuple(tools + system + [a for a in messages if a.kind != "system"])
