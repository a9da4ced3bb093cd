"""The shipped SAEs load in SAELens (``SAE.load_from_disk``) and encode exactly as ours do.

SAELens pulls a large dependency tree, so it lives in its own venv (``--system-site-packages``, so
torch is reused) under ``.cache/saelens-venv``, made by scripts/saelens-venv.sh (scripts/test.sh runs
it), never at test time. Without it the test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from hif.explainer.core.sae import TopKSAE
from hif.explainer.features import layer_folder
from hif.explainer.featureset import load_registry

pytestmark = pytest.mark.slow

VENV = Path(__file__).parents[2] / ".cache" / "saelens-venv"
SCRIPT = """
import sys, torch
from sae_lens import SAE
sae = SAE.load_from_disk(sys.argv[1], device="cpu", dtype="float32")
with torch.no_grad():
    torch.save(sae.encode(torch.load(sys.argv[2])), sys.argv[3])
"""


def _saelens_python() -> Path:
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import sae_lens"], check=False).returncode == 0:
        return python
    why = "SAELens is not installed in .cache/saelens-venv: run scripts/saelens-venv.sh"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {why}", pytrace=False)
    pytest.skip(why)


def _shipped_folders() -> list[Path]:
    registry = load_registry()
    folders = []
    for info in registry.list():
        if info.available and info.sae_path is not None:
            folders += [f for layer in info.layers if (f := layer_folder(info, layer)) is not None]
    return folders


def test_shipped_saes_load_in_saelens_and_encode_identically(tmp_path: Path) -> None:
    python = _saelens_python()
    folders = _shipped_folders()
    assert folders
    for folder in folders:
        ours = TopKSAE.load(folder)
        # Inputs near the data: the decoder bias (the SAE's centre) plus decoder rows mixed with
        # noise, so many latents compete for the top k whatever the layer's scale.
        gen = torch.Generator().manual_seed(0)
        x = (
            ours.b_dec.float()
            + torch.randn(64, 8, generator=gen) @ ours.W_dec[:8].float()
            + 0.1 * torch.randn(64, ours.d_in, generator=gen)
        )
        torch.save(x, tmp_path / "x.pt")
        subprocess.run(
            [python, "-c", SCRIPT, str(folder), str(tmp_path / "x.pt"), str(tmp_path / "codes.pt")],
            check=True,
            timeout=300,
        )
        theirs = torch.load(tmp_path / "codes.pt")
        with torch.no_grad():
            mine = ours.encode(x)
        # Both upcast the float16 file to float32 and compute the same ops: identical, not close.
        assert theirs.shape == mine.shape == (64, ours.d_sae)
        assert int((mine > 0).sum()) > 64 * ours.k // 2, "inputs too far from the data to test much"
        assert torch.equal(theirs, mine), folder
