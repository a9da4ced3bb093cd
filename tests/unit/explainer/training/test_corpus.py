"""The corpus: named sources per domain, held-out sources outside the mix, a user's own text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hif.errors import FeaturesetError
from hif.explainer.training import corpus


def test_every_domain_has_training_and_held_out_sources_that_differ() -> None:
    for domain in corpus.DOMAINS:
        train = {s.name for s in corpus.SOURCES if s.domain == domain and not s.heldout}
        held = {s.name for s in corpus.SOURCES if s.domain == domain and s.heldout}
        assert train and held and not train & held
    assert all(s.licence and s.origin for s in corpus.SOURCES)


def test_a_missing_package_names_how_to_install_it() -> None:
    def gone() -> list[str]:
        raise FileNotFoundError("/usr/share/doc/nothing.gz")

    source = corpus.Source("nothing", "prose", False, "Debian package nothing", "none", gone)
    with pytest.raises(FeaturesetError, match="install it: Debian package nothing"):
        corpus._read(source)


def test_user_corpus_reads_text_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A paragraph long enough to count as a document.\n\nshort\n")
    rows = [
        {"prompt": "How do I reset my password?", "completion": "Open settings and choose reset."},
        {"messages": [{"role": "user", "content": "What is the weather like in Paris this week?"}]},
        {"text": "tiny"},
    ]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs = corpus.user_documents(tmp_path)
    assert docs == [
        "A paragraph long enough to count as a document.",
        "How do I reset my password?\nOpen settings and choose reset.",
        "What is the weather like in Paris this week?",
    ]
    loaded = corpus.load_corpus(tmp_path)
    assert set(loaded.heldout) == {corpus.USER} and loaded.sources == [f"user:{tmp_path.name}"]


def test_user_corpus_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FeaturesetError, match="has no files"):
        corpus.user_documents(tmp_path / "missing")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(FeaturesetError, match="line 1: not JSON"):
        corpus.user_documents(tmp_path / "bad.jsonl")
