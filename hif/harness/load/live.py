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


class LiveView:
    def __init__(self, mode: str, *, title: str) -> None:
        self.title = title
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

    def _fields(self, view: dict[str, Any], polls_in_flight: int, chaos: Sequence[str]) -> dict[str, str]:
        return {
            "req/s": f"{view['rps']:.0f}",
            "p50 ms": f"{view['p50_ms']:.1f}",
            "p95 ms": f"{view['p95_ms']:.1f}",
            "intended p99 ms": f"{view['intended_p99_ms']:.1f}",
            "errors": f"{view['errors']} ({view['error_rate']:.1%})",
            "polls in flight": str(polls_in_flight),
            "traces done": str(view["traces"]),
            "sla p95 s/t ms": f"{view['sentence_p95_ms']:.0f}/{view['token_p95_ms']:.0f}",
            "loop lag p99 ms": f"{view['loop_lag_p99_ms']:.1f}",
            "chaos": ",".join(chaos) or "-",
        }

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
