"""The stage order is enforced, not only documented: an import in the wrong direction fails `lint-imports`.

Each test copies the package to a temporary folder, plants one wrong-direction import in the copy (or none), and
runs `lint-imports` on the copy with this project's own contracts, the copy first on the import path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = "Stages import only the stages below them"
RENDER_ONLY = "Render only renders"


def lint_copy(tmp_path: Path, plant: tuple[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on a copy of the package, with ``plant`` (a module's path and a line) appended first."""
    shutil.copytree(ROOT / "zumik_cli", tmp_path / "zumik_cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if plant is not None:
        module, line = plant
        with (tmp_path / module).open("a", encoding="utf-8") as stream:
            stream.write(f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    where = subprocess.run(
        [sys.executable, "-c", "import zumik_cli; print(zumik_cli.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(tmp_path), "the copy must be the package that is checked"
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("lint-imports")),
            "--no-cache",
            "--no-logo",
            str(tmp_path / "pyproject.toml"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_copy(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{LAYERS} KEPT" in result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contracts", "chain"),
    [
        (
            "zumik_cli/core/model.py",
            "import zumik_cli.render.terminal.tables",
            (LAYERS,),
            "zumik_cli.core.model -> zumik_cli.render.terminal.tables",
        ),
        (
            "zumik_cli/diagnosis/diagnose.py",
            "from zumik_cli.render.report import page",
            (LAYERS,),
            "zumik_cli.diagnosis.diagnose -> zumik_cli.render.report.page",
        ),
        # render sits above diagnosis in the layers; its own contract keeps it from running any stage
        (
            "zumik_cli/render/report/page.py",
            "from zumik_cli.diagnosis import diagnose",
            (RENDER_ONLY,),
            "zumik_cli.render.report.page -> zumik_cli.diagnosis.diagnose",
        ),
    ],
    ids=["core imports render", "diagnosis imports render", "render imports diagnosis"],
)
def test_an_import_in_the_wrong_direction_fails_naming_the_contract_and_the_import(
    tmp_path: Path, module: str, line: str, contracts: tuple[str, ...], chain: str
) -> None:
    result = lint_copy(tmp_path, (module, line))

    assert result.returncode != 0, result.stdout
    for contract in contracts:
        assert f"{contract} BROKEN" in result.stdout, result.stdout
    assert chain in result.stdout
