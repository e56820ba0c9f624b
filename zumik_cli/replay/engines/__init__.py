"""Replay engines by name: a plain registry, so ``zumik replay --engine NAME`` needs no plugin machinery.

Importing this package never imports vLLM; an engine loads its heavy dependencies when it is built.
"""

from __future__ import annotations

from zumik_cli.replay.engines.base import Engine, EngineInfo, EngineResult
from zumik_cli.replay.engines.openai_http import OpenAIHttpEngine
from zumik_cli.replay.engines.vllm_local import VllmLocalEngine

ENGINES: dict[str, type[VllmLocalEngine] | type[OpenAIHttpEngine]] = {
    "vllm": VllmLocalEngine,
    "openai-http": OpenAIHttpEngine,
}

__all__ = ["ENGINES", "Engine", "EngineInfo", "EngineResult", "OpenAIHttpEngine", "VllmLocalEngine"]
