"""The live view: a rich panel on a terminal, plain periodic lines on stderr otherwise.

Both go to stderr so stdout stays the one JSON line the run ends with. With ``--processes N``
the parent shows one view of every child's bucket, merged exactly (see ``_procs.LiveMerger``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

PLAIN_EVERY_S = 5.0


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def _clock(seconds: float) -> str:
    m, s = divmod(int(max(seconds, 0.0)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class LiveView:
    def __init__(self, mode: str, *, title: str, duration_s: float | None = None) -> None:
        self.title = title
        self.duration_s = duration_s
        self._t0 = time.monotonic()
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode = mode
        self._last_plain = 0.0
        self._live: Any = None
        if mode == "rich":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live.start()

    def _time(self) -> dict[str, str]:
        elapsed = time.monotonic() - self._t0
        out = {"elapsed": _clock(elapsed)}
        if self.duration_s is not None:
            left = self.duration_s - elapsed
            out["remaining"] = _clock(left) if left > 0 else "draining"
        return out

    def _fields(self, view: dict[str, Any], polls_in_flight: int, chaos: Sequence[str]) -> dict[str, str]:
        error_rate = view["error_rate"] or 0.0
        return {
            **self._time(),
            "req/s": f"{view['rps']:.0f}",
            "chat p50": _ms(view["p50_ms"]),
            "chat p95": _ms(view["p95_ms"]),
            "chat intended p99": _ms(view["intended_p99_ms"]),
            **self._stream_fields(view),
            "errors": f"{view['errors']} ({error_rate:.1%})",
            "polls in flight": str(polls_in_flight),
            "traces done": str(view["traces"]),
            "sentence p95": _ms(view["sentence_p95_ms"]),
            "token p95": _ms(view["token_p95_ms"]),
            "loop lag p99": _ms(view["loop_lag_p99_ms"]),
            "chaos": ",".join(chaos) or "-",
        }

    @staticmethod
    def _stream_fields(view: dict[str, Any]) -> dict[str, str]:
        """TTFT and ITL p95 of a bucket that held streams (ITL "-" without a local tokenizer).

        A bucket's streams are settled (their ITL counted) by the ticker before the bucket
        closes, so the figures shown are the bucket's own."""
        if "ttft_p95_ms" not in view:
            return {}
        return {"TTFT p95": _ms(view["ttft_p95_ms"]), "ITL p95": _ms(view.get("itl_p95_ms"))}

    def update(self, view: dict[str, Any], *, polls_in_flight: int, chaos: Sequence[str]) -> None:
        """Show one finished bucket's view (``Bucket.view()``)."""
        if self.mode == "off":
            return
        fields = self._fields(view, polls_in_flight, chaos)
        if self.mode == "rich":
            from rich.table import Table

            table = Table(title=self.title)
            table.add_column("metric")
            table.add_column("value", justify="right")
            for name, value in fields.items():
                table.add_row(name, value)
            self._live.update(table)
            return
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            line = " ".join(f"{k.replace(' ', '_')}={v}" for k, v in fields.items())
            print(f"hif load: {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
