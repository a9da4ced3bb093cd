"""The SLO gate registry: every gate's name, unit, direction and where its value is read.

One registry serves the load runner (``summary.json``'s ``slo``), the soak (segments that broke
a gate), the report and later tools. A gate is a ceiling (the value must stay at or below the
threshold: latencies, error rates) or a floor (at or above: throughput, success rate). On the
command line ``--slo`` is repeatable and takes a comma-separated list:

    --slo chat_p95_ms=500 --slo ttft_p95_ms=800,itl_p99_ms=60 --slo rps>=100

``NAME=VALUE`` uses the gate's own direction; ``NAME<=VALUE`` and ``NAME>=VALUE`` spell it out and
must agree with it (a floor written as a ceiling is a mistake, not a wish).

>>> parse_slos(["ttft_p95_ms=800,rps>=100"])
{'ttft_p95_ms': 800.0, 'rps': 100.0}
>>> REGISTRY["rps"].passes(120.0, 100.0)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from hif.errors import ConfigError

# The runbook's example targets: gates only when given with --slo, else reference lines (the SLO
# table's, and goodput's targets when a run was not gated: hif.harness.goodput).
RUNBOOK_SLOS: dict[str, float] = {
    "chat_p95_ms": 500.0,
    "error_rate": 0.01,
    "sentence_p95_ms": 1500.0,
    "token_p95_ms": 3500.0,
    "expired_failed_rate": 0.05,
}

Direction = Literal["max", "min"]  # max: a ceiling (value <= threshold); min: a floor (value >= threshold)
Reader = Callable[[Mapping[str, Any]], "float | None"]


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    unit: str  # "ms", "ratio", "req/s", "tokens/s"
    direction: Direction
    help: str
    read: Reader  # the value from a load summary (``summary.json``'s layout); None: no data

    def passes(self, value: float | None, threshold: float) -> bool | None:
        if value is None:
            return None
        return value <= threshold if self.direction == "max" else value >= threshold

    @property
    def op(self) -> str:
        return "<=" if self.direction == "max" else ">="


def _dig(d: Mapping[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)  # type: ignore[assignment]
    return d


def _pct(path: tuple[str, ...], p: str) -> Reader:
    """A percentile of one summary histogram; None when it counted nothing."""

    def read(s: Mapping[str, Any]) -> float | None:
        h = _dig(s, *path)
        if not isinstance(h, Mapping) or not h.get("count"):
            return None
        value = h.get(f"{p}_ms")
        return float(value) if isinstance(value, int | float) else None

    return read


def _number(path: tuple[str, ...], *, needs: tuple[str, ...] | None = None) -> Reader:
    """A plain figure; None when the count at ``needs`` is zero (a rate of nothing)."""

    def read(s: Mapping[str, Any]) -> float | None:
        if needs is not None and not _dig(s, *needs):
            return None
        value = _dig(s, *path)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return read


# Latency families: name prefix -> (summary path, what it measures). Each gets p50/p90/p95/p99.
LATENCIES: dict[str, tuple[tuple[str, ...], str]] = {
    "chat": (("chat", "latency_ms"), "chat latency, send -> answer (streamed: -> last content event)"),
    "intended": (("chat", "intended_latency_ms"), "chat latency from the intended start"),
    "ttfb": (("chat", "stream", "ttfb_ms"), "time to the first body byte (--stream)"),
    "ttft": (("chat", "stream", "ttft_ms"), "time to the first content token (--stream)"),
    "ttfo": (("chat", "stream", "ttfo_ms"), "time to the first output of any kind (--stream)"),
    "intended_ttft": (("chat", "stream", "intended_ttft_ms"), "TTFT from the intended start"),
    "itl": (("chat", "stream", "itl_ms"), "inter-token latency, per token (--stream, local tokenizer)"),
    "tpot": (("chat", "stream", "tpot_ms"), "time per output token, per request (--stream)"),
    "sentence": (("explanations", "sla_ms", "sentence"), "sentence explanation SLA"),
    "token": (("explanations", "sla_ms", "token"), "token explanation SLA"),
}
PERCENTILES = ("p50", "p90", "p95", "p99")


def _registry() -> dict[str, Gate]:
    gates = [
        Gate(f"{prefix}_{p}_ms", "ms", "max", f"{p} of the {what}", _pct(path, p))
        for prefix, (path, what) in LATENCIES.items()
        for p in PERCENTILES
    ]
    gates += [
        Gate(
            "error_rate",
            "ratio",
            "max",
            "failed chats / chats",
            _number(("chat", "error_rate"), needs=("chat", "requests")),
        ),
        Gate(
            "success_rate",
            "ratio",
            "min",
            "ok chats / chats",
            _number(("chat", "success_rate"), needs=("chat", "requests")),
        ),
        Gate(
            "expired_failed_rate",
            "ratio",
            "max",
            "(expired + failed) / traces",
            _number(("explanations", "expired_failed_rate"), needs=("explanations", "traces")),
        ),
        Gate(
            "rps",
            "req/s",
            "min",
            "chats per second achieved",
            _number(("chat", "rps"), needs=("chat", "requests")),
        ),
        Gate(
            "goodput_rps",
            "req/s",
            "min",
            "good chats per second (hif.harness.goodput: within the chat target, explanation in time)",
            _number(("chat", "goodput_rps"), needs=("chat", "requests")),
        ),
        Gate(
            "goodput_share",
            "ratio",
            "min",
            "good chats / chats",
            _number(("chat", "goodput_share"), needs=("chat", "requests")),
        ),
        Gate(
            "output_tokens_per_s",
            "tokens/s",
            "min",
            "output tokens per second, all streams (--stream)",
            _number(("chat", "stream", "output_tokens_per_s"), needs=("chat", "stream", "output_tokens")),
        ),
        Gate(
            "usage_mismatch_rate",
            "ratio",
            "max",
            "streams whose local and server completion counts differ (--stream)",
            _number(("chat", "stream", "usage_mismatch_rate")),
        ),
    ]
    return {g.name: g for g in gates}


REGISTRY: dict[str, Gate] = _registry()
_KIND = {"max": "ceiling", "min": "floor"}


def gate(name: str) -> Gate:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError("slo", f"unknown gate {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def _items(items: Iterable[str]) -> Iterable[str]:
    for item in items:
        for part in item.split(","):
            if part.strip():
                yield part.strip()


def parse_slos(items: Iterable[str]) -> dict[str, float]:
    """``["chat_p95_ms=500", "ttft_p95_ms=800,rps>=100"]`` -> thresholds by gate name."""
    out: dict[str, float] = {}
    for item in _items(items):
        for op in (">=", "<=", "="):
            name, sep, value = item.partition(op)
            if sep:
                break
        else:
            raise ConfigError("slo", f"{item!r}: expected NAME=VALUE, NAME<=VALUE or NAME>=VALUE")
        g = gate(name.strip())
        if op != "=" and op != g.op:
            raise ConfigError(
                "slo",
                f"{item!r}: {g.name} is a {_KIND[g.direction]}; write {g.name}{g.op}VALUE",
            )
        try:
            out[g.name] = float(value)
        except ValueError as exc:
            raise ConfigError("slo", f"{item!r}: {value.strip()!r} is not a number") from exc
    return out


def _judge(slos: Mapping[str, float], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, threshold in slos.items():
        g = gate(name)
        value = g.read(summary)
        out.append(
            {
                "name": name,
                "threshold": threshold,
                "value": value,
                "pass": g.passes(value, threshold),
                "op": g.op,
            }
        )
    return out


def evaluate(
    slos: Mapping[str, float], summary: Mapping[str, Any], reference: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """``summary.json``'s ``slo``: each gate's value, verdict (None: no data) and direction.

    With no gates the verdict is None ("not gated"), never a pass. ``reference`` gates (the
    runbook's example targets) are judged for reading only: they never set the verdict."""
    gates = _judge(slos, summary)
    return {
        "gates": gates,
        "pass": verdict(gates),
        "gated": bool(gates),
        "reference": _judge(reference or {}, summary),
    }


def verdict(gates: list[dict[str, Any]]) -> bool | None:
    """None when not gated, False when a gate failed, else True (a gate without data does not fail)."""
    if not gates:
        return None
    return all(g["pass"] is not False for g in gates)


def breaches(values: Mapping[str, float | None], slos: Mapping[str, float]) -> list[str]:
    """Names of the gates that ``values`` (already read) break, in each gate's direction."""
    out = []
    for name, threshold in slos.items():
        g = REGISTRY.get(name)
        value = values.get(name)
        if g is not None and g.passes(value, threshold) is False:
            out.append(name)
    return out


def help_text() -> str:
    """One line for ``--slo``'s help."""
    return (
        "SLO gate NAME=VALUE (NAME>=VALUE for a floor), repeatable and comma-separated: "
        "chat_p95_ms, ttft_p95_ms, itl_p99_ms, tpot_p95_ms, error_rate, sentence_p95_ms, token_p95_ms, "
        "expired_failed_rate, rps>=, goodput_rps>=, goodput_share>=, output_tokens_per_s>= ... "
        "(docs/load.md lists all; exit code 1 when one fails)"
    )
