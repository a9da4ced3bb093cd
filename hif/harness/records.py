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
     "chaos": [active flag names], "shard": "i/N", "late": bool}

explanation_results.jsonl, one line per attached trace::

    {"v": "hif.explanation.v1", "ts": <chat response time>, "trace_id": ..., "tenant": ...,
     "granularity": <requested>, "resolved_granularity": ..., "state": "complete" | "failed" |
     "expired" | "shed" | "orphaned" (no terminal state before the polling deadline),
     "sla_ms": <chat response -> first poll that saw the terminal state>,
     "sla_bound_ms": <gap between the last pending poll and that poll: the measurement's width>,
     "polls": n, "graph_ok": bool | null, "degraded": [...], "attribution": ..., "error": ...,
     "chaos": [active flags at the chat response], "shard": "i/N"}
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
