"""Prompt datasets for the load runner (``--dataset``): what each chat asks and how long it may answer.

Specs:

* ``synthetic:prompt_tokens=normal(512,128),output_tokens=uniform(64,256)``: lengths in tokens drawn
  from ``fixed(n)`` (or a bare ``n``), ``normal(mean,sd)``, ``uniform(lo,hi)`` or
  ``lognormal(median,sigma)``, seeded by ``--seed``; the text is made of common English words that
  the explainer model's tokenizer counts as one token each, so a prompt of n words is n tokens;
* ``chat_small``: the small dataset shipped in ``hif/harness/datasets/`` (written for this project,
  Apache-2.0);
* a path to a JSONL file of ``{"messages": [...]}`` or ``{"prompt": "..."}`` lines with an optional
  ``max_tokens`` (or ``max_completion_tokens``);
* a path to a ShareGPT JSON file (a list of ``{"conversations": [{"from": "human", "value": ...},
  {"from": "gpt", ...}]}``): the first human turn is the prompt.

``--dataset-sampling``: ``random`` (with replacement, per worker), ``sequential`` (file order,
cycling) or ``shuffle`` (a seeded order without replacement, reshuffled each pass).
``--dataset-size`` bounds how many entries are loaded (their bodies are built at start-up).

>>> rows = load_dataset("synthetic:prompt_tokens=8,output_tokens=uniform(4,6)", seed=1, size=3)
>>> [len(r.messages[0]["content"].split()) for r in rows]
[8, 8, 8]
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from hif.errors import ConfigError

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "datasets"
SHIPPED = {"chat_small": SHIPPED_DIR / "chat_small.jsonl"}
SAMPLINGS = ("random", "sequential", "shuffle")
MAX_SYNTHETIC_TOKENS = 32_768

# Common English words that MiniLM's WordPiece vocabulary holds whole (one token each, checked by
# tests/unit/harness/test_dataset.py against the packaged tokenizer).
_WORDS = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact have do say get make go know take see come think look "
    "want give use find tell ask seem feel try leave call good new first last long great little own other "
    "old right big high different small large next early young important few public bad same able water "
    "system data model cache server network request answer question story music city river mountain "
    "garden kitchen window morning evening summer winter market price money letter paper history science "
    "reason result method language computer memory signal energy light color sound power people because "
    "the and that with from about into over after this they she will would there their what which when"
)
VOCABULARY = tuple(_WORDS.split())


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One dataset row: the chat's messages and its answer budget (None: the run's --max-tokens)."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int | None


Draw = Callable[[random.Random], float]


def _distribution(key: str, text: str) -> Draw:
    text = text.strip()
    m = re.fullmatch(r"(\w+)\(([^)]*)\)", text)
    try:
        if m is None:
            n = float(text)
            return lambda rng: n
        kind, args = m.group(1), [float(a) for a in m.group(2).split(",")]
    except ValueError as exc:
        raise ConfigError("dataset", f"{key}={text!r}: arguments must be numbers") from exc
    shapes: dict[str, tuple[int, Draw]] = {
        "fixed": (1, lambda rng: args[0]),
        "normal": (2, lambda rng: rng.gauss(args[0], args[1])),
        "uniform": (2, lambda rng: rng.uniform(args[0], args[1])),
        "lognormal": (2, lambda rng: args[0] * math.exp(rng.gauss(0.0, args[1]))),
    }
    if kind not in shapes:
        raise ConfigError(
            "dataset", f"{key}={text!r}: use fixed(n), normal(m,sd), uniform(lo,hi), lognormal(med,s)"
        )
    arity, draw = shapes[kind]
    if len(args) != arity:
        raise ConfigError("dataset", f"{key}={text!r}: {kind} takes {arity} argument(s)")
    return draw


def _tokens(draw: Draw, rng: random.Random, low: int) -> int:
    return min(max(low, round(draw(rng))), MAX_SYNTHETIC_TOKENS)


def synthetic(spec: str, *, seed: int, size: int) -> list[Entry]:
    fields: dict[str, str] = {}
    for part in re.split(r",(?![^()]*\))", spec):  # commas inside (...) belong to the distribution
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in ("prompt_tokens", "output_tokens"):
                raise ConfigError(
                    "dataset", f"synthetic: {part!r}: expected prompt_tokens=... or output_tokens=..."
                )
            fields[key.strip()] = value
    prompt = _distribution("prompt_tokens", fields.get("prompt_tokens", "128"))
    output = _distribution("output_tokens", fields["output_tokens"]) if "output_tokens" in fields else None
    rng = random.Random(seed)
    out = []
    for _ in range(size):
        n = _tokens(prompt, rng, 1)
        words = [VOCABULARY[int(rng.random() * len(VOCABULARY))] for _ in range(n)]
        out.append(
            Entry(
                ({"role": "user", "content": " ".join(words)},), _tokens(output, rng, 1) if output else None
            )
        )
    return out


def _budget(row: dict[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens"):
        value = row.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _jsonl(path: Path) -> list[Entry]:
    out = []
    for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigError("dataset", f"{path}:{lineno}: not JSON ({exc})") from exc
        messages = row.get("messages") if isinstance(row, dict) else None
        if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
            msgs = tuple(
                {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages
            )
        elif isinstance(row, dict) and isinstance(row.get("prompt"), str):
            msgs = ({"role": "user", "content": row["prompt"]},)
        else:
            raise ConfigError("dataset", f"{path}:{lineno}: expected a 'messages' list or a 'prompt' string")
        out.append(Entry(msgs, _budget(row)))
    return out


def _sharegpt(path: Path) -> list[Entry]:
    try:
        rows = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConfigError("dataset", f"{path}: not JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise ConfigError("dataset", f"{path}: a ShareGPT file is a JSON list of conversations")
    out = []
    for row in rows:
        turns = row.get("conversations") if isinstance(row, dict) else None
        first = next((t for t in turns or [] if isinstance(t, dict) and t.get("from") == "human"), None)
        if first is not None and str(first.get("value", "")).strip():
            out.append(Entry(({"role": "user", "content": str(first["value"])},), None))
    return out


def load_dataset(spec: str, *, seed: int, size: int) -> list[Entry]:
    """The entries of ``spec`` (see the module docs), at most ``size`` of them."""
    if spec.startswith("synthetic:") or spec == "synthetic":
        entries = synthetic(spec.partition(":")[2], seed=seed, size=size)
    else:
        path = SHIPPED.get(spec) or Path(spec)
        if not path.is_file():
            raise ConfigError(
                "dataset", f"{spec!r}: no such file (or use synthetic:..., {', '.join(SHIPPED)})"
            )
        entries = _sharegpt(path) if path.suffix == ".json" else _jsonl(path)
    if not entries:
        raise ConfigError("dataset", f"{spec!r}: no usable entries")
    return entries[:size]


class Order:
    """Which entry the next chat sends: ``sequential`` and ``shuffle`` share one cursor (a counter
    and a list index per request); ``random`` draws from the worker's own RNG."""

    def __init__(self, n: int, sampling: str, seed: int) -> None:
        if sampling not in SAMPLINGS:
            raise ConfigError("dataset_sampling", f"{sampling!r}: use one of {', '.join(SAMPLINGS)}")
        self.n, self.sampling = n, sampling
        self._rng = random.Random(seed)
        self._order = list(range(n))
        if sampling == "shuffle":
            self._rng.shuffle(self._order)
        self._i = 0

    def next(self, rng: random.Random) -> int:
        if self.sampling == "random":
            return int(rng.random() * self.n)
        if self._i == self.n:
            self._i = 0
            if self.sampling == "shuffle":
                self._rng.shuffle(self._order)
        i = self._order[self._i]
        self._i += 1
        return i
