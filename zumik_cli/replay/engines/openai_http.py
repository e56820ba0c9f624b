"""A running OpenAI-compatible server (``vllm serve`` and the like) as a replay engine, over plain HTTP.

The server must be started with prefix caching on and ``--enable-prompt-tokens-details``, or it does not
report ``usage.prompt_tokens_details.cached_tokens``; a reply without that field is recorded as unknown
(``None``), never as zero. Only the standard library is used, so this engine needs no extra.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from zumik_cli.core.errors import ZumikError
from zumik_cli.replay.engines.base import EngineInfo, EngineResult

DEFAULT_URL = "http://127.0.0.1:8000"
START_HINT = (
    "start one with `python -m vllm.entrypoints.openai.api_server --model MODEL --enable-prefix-caching "
    "--enable-prompt-tokens-details` (`vllm serve` with the GPU package) or give the right URL"
)


class OpenAIHttpEngine:
    """Sends each prompt as token ids to ``POST /v1/completions`` and reads the server's cached-token count.

    A server does not say its block size or capacity, so they are whatever the caller started it with
    (``None`` when not given); the model defaults to the first one the server lists.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        model: str | None = None,
        block_size: int | None = None,
        capacity_blocks: int | None = None,
        api_key: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        root = base_url.rstrip("/")
        self._root = root.removesuffix("/v1")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._model = model if model is not None else self._first_model()
        served = self._cache_config()
        if served is not None:
            served_block, served_capacity = served
            for name, given, found in (
                ("block size", block_size, served_block),
                ("--kv-blocks", capacity_blocks, served_capacity),
            ):
                if given is not None and given != found:
                    raise ZumikError(
                        f"the server at {self._root} reports {name} {found}, not {given}: replay with the server's "
                        f"values (vLLM holds one block back, so a server started with --num-gpu-blocks-override "
                        f"N serves N - 1 blocks), or leave them out to use the server's"
                    )
            block_size, capacity_blocks = served_block, served_capacity
        self.info = EngineInfo(
            name="openai-http",
            version=self._server_version(),
            device=f"remote ({self._root})",
            block_size=block_size,
            capacity_blocks=capacity_blocks,
            model=self._model,
            capacity_confirmed=served is not None,
            capacity_source="confirmed" if served is not None else "unknown" if capacity_blocks is None else "chosen",
        )

    def run(self, prompt_token_ids: list[int]) -> EngineResult:
        """Run one prompt for a single greedy token and read ``usage.prompt_tokens_details.cached_tokens``."""
        body = {"model": self._model, "prompt": prompt_token_ids, "max_tokens": 1, "temperature": 0}
        usage = self._request("/v1/completions", body).get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        prompt_tokens = usage.get("prompt_tokens", len(prompt_token_ids))
        return EngineResult(int(prompt_tokens), None if cached is None else int(cached))

    def reset(self) -> None:
        """Ask the server to free its prefix cache (vLLM serves ``POST /reset_prefix_cache`` in its dev mode)."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        request = urllib.request.Request(self._root + "/reset_prefix_cache", data=b"", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s):
                pass
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ZumikError(
                f"the server at {self._root} did not reset its prefix cache ({exc}), which replaying a policy that "
                "routes to several targets needs: start vLLM with VLLM_SERVER_DEV_MODE=1, or replay with the "
                "in-process engine"
            ) from exc

    def _cache_config(self) -> tuple[int, int] | None:
        """The block size and usable blocks the server reports in its Prometheus metrics (vLLM's
        ``vllm:cache_config_info``), or None when it does not: then the capacity given is taken on trust."""
        try:
            with urllib.request.urlopen(self._root + "/metrics", timeout=self._timeout_s) as response:
                text = response.read().decode("utf-8", "replace")
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return None
        for line in text.splitlines():
            if line.startswith("vllm:cache_config_info{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                if labels.get("block_size", "").isdigit() and labels.get("num_gpu_blocks", "").isdigit():
                    return int(labels["block_size"]), int(labels["num_gpu_blocks"]) - 1
        return None

    def _first_model(self) -> str:
        models = self._request("/v1/models").get("data") or []
        if not models:
            raise ZumikError(f"the server at {self._root} lists no model; give the model name explicitly")
        return str(models[0]["id"])

    def _server_version(self) -> str:
        # /version is vLLM's; other servers lack it, which is no reason to refuse them.
        try:
            return str(self._request("/version").get("version", "unknown"))
        except ZumikError:
            return "unknown"

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self._root + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode(errors="replace").strip()
            raise ZumikError(f"the server at {self._root} answered {path} with HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ZumikError(f"no OpenAI-compatible server answered at {self._root} ({exc}); {START_HINT}") from exc
        except json.JSONDecodeError as exc:
            raise ZumikError(f"the server at {self._root} answered {path} with something that is not JSON") from exc
        if not isinstance(payload, dict):
            raise ZumikError(
                f"the server at {self._root} answered {path} with an unexpected reply; is it OpenAI-compatible?"
            )
        return payload
