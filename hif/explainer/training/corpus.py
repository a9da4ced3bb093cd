"""The training corpus: English prose, dialogue and code from sources that install from registries.

Each domain has training sources and held-out sources from *other* packages, so the per-domain FVU
says how the SAE fits text it has never seen the like of, not a split of what it trained on:

=========  ==========================================  ==========================================
domain     trains on                                   held out (never in the training mix)
=========  ==========================================  ==========================================
prose      Debian ``jargon-text`` (public domain)       Debian ``debian-faq`` (SPI verbatim licence)
dialogue   Debian ``fortunes`` (BSD-4-clause, fortune)  Debian ``fortune-anarchism`` (public domain)
code       CPython's standard library source and        PyPI ``rich`` (MIT): its Python source
           ``pydoc_data.topics`` (PSF licence)
=========  ==========================================  ==========================================

Python sources are read as text and docstrings with ``ast`` (never imported: importing
``antigravity`` opens a browser). Order is fixed (a seeded shuffle within each domain, so a token
cap samples the whole source rather than its first letters) and the text's SHA-256 is recorded, so
a build says exactly what it saw. ``--corpus PATH`` trains on a user's own text instead.
"""

from __future__ import annotations

import ast
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import random
import sysconfig
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from hif.errors import FeaturesetError

SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
MIN_DOC_CHARS = 40
MAX_DOC_CHARS = 4000  # long files are cut into pieces so one file cannot dominate a token cap
HELDOUT_EVERY = 10  # every 10th training-source document is the label-scoring split
SHUFFLE_SEED = 0
DOMAINS = ("prose", "dialogue", "code")
USER = "user"

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# The English files the Debian ``fortunes`` package ships (art and ascii-art are pictures, not text).
FORTUNE_FILES = tuple(
    [
        "computers",
        "cookie",
        "debian",
        "definitions",
        "disclaimer",
        "drugs",
        "education",
        "ethnic",
        "food",
        "goedel",
        "humorists",
        "kids",
        "knghtbrd",
        "law",
        "linux",
        "linuxcookie",
        "love",
        "magic",
        "medicine",
        "men-women",
        "miscellaneous",
        "news",
        "paradoxum",
        "people",
        "perl",
        "pets",
        "platitudes",
        "politics",
        "pratchett",
        "science",
        "songs-poems",
        "sports",
        "startrek",
        "tao",
        "translate-me",
        "wisdom",
        "work",
        "zippy",
    ]
)
JARGON = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
DEBIAN_FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    name: str
    domain: str
    heldout: bool  # True: evaluation only, never trained on
    origin: str  # how to install it
    licence: str
    read: Callable[[], list[str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Corpus:
    """Training documents (with the label-scoring split) and held-out documents per domain."""

    train: list[str]
    label_split: list[str]  # from the training sources, not trained on: labels are scored here
    heldout: dict[str, list[str]]  # domain -> documents from sources outside the training mix
    sha256: str
    sources: list[str]

    @property
    def documents(self) -> int:
        return len(self.train) + len(self.label_split) + sum(len(d) for d in self.heldout.values())


def _paragraphs(text: str) -> list[str]:
    paras = (" ".join(p.split()) for p in text.split("\n\n"))
    return [p for p in paras if len(p) >= MIN_DOC_CHARS]


def _fortunes(names: Sequence[str]) -> list[str]:
    docs: list[str] = []
    for name in names:
        text = (FORTUNES_DIR / name).read_text(encoding="utf-8", errors="replace")
        docs.extend(d.strip() for d in text.split("\n%\n") if len(d.strip()) >= MIN_DOC_CHARS)
    return docs


def _gz_paragraphs(path: Path) -> list[str]:
    return _paragraphs(gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace"))


def _python_files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*.py")) if not SKIP_DIRS.intersection(p.relative_to(root).parts)]


def _code_pieces(path: Path) -> list[str]:
    """A source file's text cut at top-level blank-line pairs into pieces of at most MAX_DOC_CHARS."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    pieces, current = [], ""
    for block in text.split("\n\n\n"):
        if current and len(current) + len(block) > MAX_DOC_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n\n{block}" if current else block
    pieces.append(current)
    return [p[:MAX_DOC_CHARS] for p in pieces if len(p.strip()) >= MIN_DOC_CHARS]


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


def _stdlib() -> list[str]:
    from pydoc_data.topics import topics

    docs = [topics[name] for name in sorted(topics)]
    for path in _python_files(Path(sysconfig.get_paths()["stdlib"])):
        docs.extend(_docstrings(path))
        docs.extend(_code_pieces(path))
    return docs


def _package_source(package: str) -> Callable[[], list[str]]:
    def read() -> list[str]:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(package)
        root = Path(next(iter(spec.submodule_search_locations)))
        return [piece for path in _python_files(root) for piece in _code_pieces(path)]

    return read


def _files(*paths: Path, reader: Callable[[], list[str]]) -> Callable[[], list[str]]:
    def read() -> list[str]:
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(", ".join(missing))
        return reader()

    return read


SOURCES: tuple[Source, ...] = (
    Source(
        "jargon-text",
        "prose",
        False,
        "Debian package jargon-text",
        "public domain",
        _files(JARGON, reader=lambda: _gz_paragraphs(JARGON)),
    ),
    Source(
        "fortunes",
        "dialogue",
        False,
        "Debian package fortunes",
        "BSD-4-clause (fortune-mod)",
        _files(*(FORTUNES_DIR / n for n in FORTUNE_FILES), reader=lambda: _fortunes(FORTUNE_FILES)),
    ),
    Source("cpython-stdlib", "code", False, "CPython (every install)", "PSF-2.0", _stdlib),
    Source(
        "debian-faq",
        "prose",
        True,
        "Debian package debian-faq",
        "SPI verbatim-copying licence",
        _files(DEBIAN_FAQ, reader=lambda: _gz_paragraphs(DEBIAN_FAQ)),
    ),
    Source(
        "fortune-anarchism",
        "dialogue",
        True,
        "Debian package fortune-anarchism",
        "public domain",
        _files(FORTUNES_DIR / "anarchism", reader=lambda: _fortunes(["anarchism"])),
    ),
    Source("rich", "code", True, "PyPI package rich (a hif dependency)", "MIT", _package_source("rich")),
)


def _read(source: Source) -> list[str]:
    try:
        docs = source.read()
    except (FileNotFoundError, OSError) as exc:
        raise FeaturesetError(
            f"corpus source {source.name!r} is missing ({exc}); install it: {source.origin}"
        ) from exc
    random.Random(f"{SHUFFLE_SEED}:{source.name}").shuffle(docs)
    return docs


def _interleave(groups: list[list[str]]) -> list[str]:
    """Round-robin over the domains, so any token cap takes them in equal measure."""
    out: list[str] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def user_documents(path: Path) -> list[str]:
    """A user's own text: a file or a folder of ``.txt``/``.md`` (documents split on blank lines) and
    ``.jsonl`` (one object a line: ``text``, or ``prompt`` and ``completion``, or chat ``messages``)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise FeaturesetError(f"corpus {path} has no files")
    docs: list[str] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        docs.extend(_jsonl(file, text) if file.suffix == ".jsonl" else _paragraphs(text))
    if not docs:
        raise FeaturesetError(f"corpus {path} has no document of {MIN_DOC_CHARS} characters or more")
    return docs


def _jsonl(file: Path, text: str) -> list[str]:
    docs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeaturesetError(f"corpus {file} line {n}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise FeaturesetError(f"corpus {file} line {n}: expected an object")
        parts = [row.get("text"), row.get("prompt"), row.get("completion")]
        parts += [m.get("content") for m in row.get("messages") or [] if isinstance(m, dict)]
        doc = "\n".join(p for p in parts if isinstance(p, str) and p)
        if len(doc) >= MIN_DOC_CHARS:
            docs.append(doc)
    return docs


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    """(train, label split): a fixed, interleaved split so both sides see every source."""
    heldout = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return train, heldout


def heldout_documents(domains: tuple[str, ...] = DOMAINS) -> dict[str, list[str]]:
    """Per domain, the documents of the held-out sources (never in the default training mix)."""
    return {d: [doc for s in SOURCES if s.heldout and s.domain == d for doc in _read(s)] for d in domains}


def load_corpus(user_corpus: Path | None = None) -> Corpus:
    """The default mix (or ``user_corpus``), its label split and the per-domain held-out text."""
    if user_corpus is not None:
        docs = user_documents(user_corpus)
        random.Random(f"{SHUFFLE_SEED}:user").shuffle(docs)
        train, label_split = split_documents(docs)
        # The user's own held-out split doubles as its domain's held-out text: nothing else is theirs.
        heldout, names = {USER: label_split}, [f"user:{user_corpus.name}"]
    else:
        groups = [split_documents(_read(s)) for s in SOURCES if not s.heldout]
        train = _interleave([g[0] for g in groups])
        label_split = _interleave([g[1] for g in groups])
        heldout, names = heldout_documents(), [s.name for s in SOURCES]
    return Corpus(train, label_split, heldout, corpus_hash([*train, *label_split]), names)


def corpus_hash(docs: list[str]) -> str:
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()
