"""The import checks of .ci/run are live: each fails on a deliberately broken copy of the package.

Both run as CI runs them (a subprocess in a folder where ``hif`` is importable), on a copy of the
package under ``tmp_path`` so the tree under test is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK_IMPORTS = REPO / "scripts" / "check_imports.py"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Sub-packages the contracts name for the explainer's layout; empty stand-ins where they are absent.
EXPLAINER_PARTS = ("core", "service", "training")


def copy_package(tmp_path: Path) -> Path:
    """``hif`` (code only: no weights, no caches) and pyproject.toml under ``tmp_path``."""
    shutil.copytree(
        REPO / "hif",
        tmp_path / "hif",
        ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.pt"),
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_cycle_checker_passes_an_acyclic_package(tmp_path: Path) -> None:
    pkg = tmp_path / "acyclic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from acyclic import b\n")
    (pkg / "b.py").write_text("X = 1\n")
    result = run([sys.executable, str(CHECK_IMPORTS), "acyclic"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 modules in acyclic, no import cycles" in result.stdout


def test_cycle_checker_fails_on_a_deliberate_cycle_and_names_it(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    (root / "hif" / "_cycle_a.py").write_text("from hif import _cycle_b\n")
    # The back edge sits in a function and under TYPE_CHECKING: both must count.
    (root / "hif" / "_cycle_b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from hif._cycle_a import X\n"
        "def f() -> None:\n"
        "    from hif import _cycle_a\n"
    )
    result = run([sys.executable, str(CHECK_IMPORTS)], root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cycle among 2 modules: hif._cycle_a, hif._cycle_b" in result.stdout
    assert "hif._cycle_a -> hif._cycle_b (line 1" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (the dev extra)")
def test_import_linter_contract_fails_when_the_harness_imports_the_gateway(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    for part in EXPLAINER_PARTS:
        folder = root / "hif" / "explainer" / part
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    (root / "hif" / "harness" / "_contract_probe.py").write_text("import hif.gateway.app\n")
    result = run([str(LINT_IMPORTS), "--no-cache"], root)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "The harness never imports the system it tests BROKEN" in out
    assert "hif.harness._contract_probe -> hif.gateway.app" in out
