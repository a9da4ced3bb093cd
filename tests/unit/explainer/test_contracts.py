"""The explainer's torch-free root: what the gateway imports must not pull in the model stack."""

from __future__ import annotations

import subprocess
import sys

import hif.explainer


def test_root_modules_do_not_import_torch() -> None:
    code = (
        "import sys, hif.explainer, hif.explainer.featureset, hif.explainer.plan, hif.explainer.settings\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'safetensors') if m in sys.modules)\n"
        "assert not heavy, heavy"
    )
    # A fresh interpreter: in this one, other tests may already have imported torch.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_public_api_names_resolve() -> None:
    missing = [name for name in hif.explainer.__all__ if not hasattr(hif.explainer, name)]
    assert missing == []
    assert hif.explainer.load_registry().default in hif.explainer.load_registry().featuresets
