"""Versioned result records: one JSONL line per chat request and per polled explanation.

The load runner writes them; the report reads them (and never needs the live run). Field names
are a contract; add fields freely, never repurpose one, and bump the version when a meaning
changes. Times are Unix seconds (floats); durations are milliseconds with ``_ms`` names.

chat_results.jsonl, one line per chat request::

    {"v": "hif.chat.v1", "ts": <actual send>, "intended_ts": <token-bucket grant / schedule slot>,
     "latency_ms": <send -> full response: service time>,
     "intended_latency_ms": <intended start -> full response: coordinated-omission-free>,
     "status": <HTTP status, 0 when no response>, "error_class": null | "http_4xx" | "http_5xx" |
     "timeout" | "connect" | "protocol" | "dropped", "error": <text or null>,
     "tenant": ..., "attached": bool, "granularity": "sentence" | "token" | null,
     "trace_id": ... | null, "explanation_state": <state in the chat answer> | null,
     "chaos": [active flag names], "shard": "i/N", "late": bool, "run": <run id / soak segment>}

    A ``dropped`` line (open loop: the slot waited longer than the timeout for a free worker, or
    the run ended first) has ``ts``, ``latency_ms`` and ``intended_latency_ms`` null. ``late``:
    sent more than ``--late-ms`` after its intended start. Times are not rounded.

explanation_results.jsonl, one line per attached trace::

    {"v": "hif.explanation.v1", "ts": <chat response time>, "trace_id": ..., "tenant": ...,
     "granularity": <requested>, "resolved_granularity": ..., "state": "complete" | "failed" |
     "expired" | "shed" | "orphaned" (no terminal state before the polling deadline),
     "sla_ms": <chat response -> first poll that saw the terminal state>,
     "sla_bound_ms": <gap between the last pending poll and that poll: the measurement's width>,
     "polls": n, "graph_ok": bool | null, "degraded": [...], "attribution": ..., "error": ...,
     "chaos": [active flags at the chat response], "shard": "i/N", "run": <run id>}

    ``granularity`` is the requested one (the SLA p95 split uses it); ``sla_ms`` and
    ``sla_bound_ms`` are null for ``orphaned``; ``sla_ms`` is 0 for a state already terminal in
    the chat answer (e.g. ``shed``).

histograms.hlog: HdrHistogram interval log (hif.harness.stats), one line per tag and time bucket
``Tag=<tag>,<start unix s>,<length s>,<max ms>,<base64 histogram of microseconds>``; tags
``chat.service``, ``chat.intended``, ``sla.sentence``, ``sla.token``, ``sla.bound``, ``poll``,
``gen.loop_lag``, ``gen.send_lag``. Summing the intervals of any window is exact.

summary.json (``"v": "hif.summary.v1"``, hif.harness._summary): ``chat`` (requests, rps, rates,
``by_status``, ``by_error_class``, ``latency_ms`` / ``intended_latency_ms`` percentile dicts),
``explanations`` (``by_state``, ``*_rate``, ``sla_ms.sentence|token``, ``polling``),
``generator`` (``valid``, ``reasons``), ``slo`` (``gates[]``: name/threshold/value/pass),
``histograms`` (tag -> base64), ``buckets`` (per ``--bucket-seconds``), ``exit_code``.

chaos_events.jsonl: the chaos event log entries (hif.chaos) inside the run's window, plus the
last one before it marked ``"before_window": true``.
"""

from __future__ import annotations

CHAT_SCHEMA = "hif.chat.v1"
EXPLANATION_SCHEMA = "hif.explanation.v1"

CHAT_FILE = "chat_results.jsonl"
EXPLANATION_FILE = "explanation_results.jsonl"
SUMMARY_FILE = "summary.json"
HISTOGRAM_LOG_FILE = "histograms.hlog"
CHAOS_EVENTS_FILE = "chaos_events.jsonl"
SOAK_SUMMARY_FILE = "soak_summary.json"
REPORT_JSON_FILE = "report.json"
REPORT_MD_FILE = "report.md"

ERROR_CLASSES = ("http_4xx", "http_5xx", "timeout", "connect", "protocol", "dropped")
EXPLANATION_STATES = ("complete", "failed", "expired", "shed", "orphaned")
