"""A kernel is one source: called, the interpreter runs it; compiled, numba runs it, its module's kernels compiled."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from zumik_cli.core.kernels import compiled

MODULE = """
from zumik_cli.core.kernels import kernel


@kernel
def _own_hint() -> int:
    return 2


@kernel(compiled_as="_own_hint")
def _hint() -> int:
    return 1


@kernel
def total(values) -> int:
    held = 0
    for i in range(len(values)):
        held += values[i]
    return held * 10 + _hint()
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"kernels_sample_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    return importlib.import_module(name)


def test_a_kernel_called_runs_the_interpreter_and_its_compiled_form_calls_the_other_kernels_compiled(
    module: ModuleType,
) -> None:
    import numpy as np

    assert module.total([1, 2, 3]) == 61  # the interpreter's hint
    assert compiled(module.total)(np.array([1, 2, 3])) == 62  # the compiled code calls what _hint names instead
    assert compiled(module.total).signatures  # a numba dispatcher, compiled at its first call
    assert module.total([4]) == 41  # the module's own names are untouched


def test_marking_and_calling_kernels_imports_no_numba(tmp_path: Path) -> None:
    (tmp_path / "kernels_plain.py").write_text(MODULE)
    script = "import sys; import kernels_plain; print(kernels_plain.total([1, 2]), 'numba' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["31", "False"]
