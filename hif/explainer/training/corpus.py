"""The offline training corpus: CPython's ``pydoc_data.topics`` plus stdlib docstrings.

Both ship with every CPython, so a fresh machine can rebuild the default featureset without a
download. Docstrings are read with ``ast`` (never by importing modules: importing ``antigravity``
opens a browser). Order is sorted and the text's SHA-256 is recorded, so a build says exactly what
it saw; a different CPython patch release gives a different hash, and metrics.json shows it.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
import warnings
from pathlib import Path

SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
MIN_DOC_CHARS = 40
HELDOUT_EVERY = 10  # every 10th document is held out for FVU / dead-latent metrics


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p for p in sorted(root.rglob("*.py")) if not SKIP_DIRS.intersection(p.relative_to(root).parts)]


def _docstrings(path: Path) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old escapes in stdlib sources warn under filterwarnings=error
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = (ast.get_docstring(node, clean=True) for node in ast.walk(tree) if isinstance(node, kinds))
    return [d for d in docs if d and len(d) >= MIN_DOC_CHARS]


def corpus_documents() -> list[str]:
    """Every document, in a fixed order: pydoc topics (sorted by name), then stdlib docstrings."""
    from pydoc_data.topics import topics

    docs = [topics[name] for name in sorted(topics)]
    for path in _stdlib_files():
        docs.extend(_docstrings(path))
    return docs


def corpus_hash(docs: list[str]) -> str:
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    """(train, held-out): a fixed, interleaved split so both sides see every source."""
    heldout = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return train, heldout
