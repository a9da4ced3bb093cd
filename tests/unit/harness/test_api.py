"""hif.harness's public API: every exported name resolves, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hif.harness

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", hif.harness.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(hif.harness, name) is not None
    assert name in dir(hif.harness)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hif.harness.nope  # noqa: B018


def test_the_runbook_shims_and_cli_share_one_entry_point() -> None:
    from hif.harness.load.cli import main

    assert hif.harness.load_main is main


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("hif.harness", ("numpy", "matplotlib", "hif.harness.load.engine", "hif.harness.report.run")),
        ("hif.harness.chaos.cli", ("numpy", "matplotlib", "httptools")),
        ("hif.harness.load.cli", ("matplotlib", "hif.harness.report.run")),
    ],
)
def test_imports_stay_light(module: str, absent: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
