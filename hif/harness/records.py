"""Every file the harness writes and reads, typed in one place, with its version and JSON Schema.

The load runner writes the JSONL records and ``summary.json``; the soak runner ``soak_summary.json``;
the report reads them all (never the live run) and writes ``report.json``. Field names are a
contract: add fields freely, never repurpose one, and bump the version (``v`` / ``schema``) when a
key or a meaning changes; readers keep accepting the previous version. Times are Unix seconds
(floats); durations are milliseconds with ``_ms`` names (``_s`` where seconds read better). One
percentile key scheme everywhere: ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` (never ``p95``).

Why TypedDict: the chat record is written once per request on the runner's hot path, as an orjson
dump of one template dict filled in place (``load/engine.py``). A TypedDict is that same dict, so
typing it costs nothing at run time; dataclasses or msgspec structs would add an object and a
conversion per request. Measured with ``python bench/hotpath.py --rounds 3``, 11 runs interleaved
with the untyped version on a busy 2-core machine (medians): 8.01 us per request untyped, 7.96 us
typed; runner / bare-parser ratio 8.4x untyped, 8.0x typed, i.e. no change beyond noise. The JSON
Schemas under ``docs/schemas/`` are generated from these definitions
(``python -m hif.harness.records --write-schemas docs/schemas``) and a unit test checks that the
published files match.

Formats in brief:

* ``chat_results.jsonl``: one :class:`ChatRecord` per chat request. A ``dropped`` line (open loop:
  the slot waited longer than the timeout for a free worker, or the run ended first) has ``ts``,
  ``latency_ms`` and ``intended_latency_ms`` null. ``late``: sent more than ``--late-ms`` after
  its intended start.
* ``explanation_results.jsonl``: one :class:`ExplanationRecord` per attached trace; ``sla_ms`` is
  chat answer -> the first poll that saw the terminal state (0 for a state already terminal in the
  chat answer), ``sla_bound_ms`` the gap since the last pending poll; both null for ``orphaned``.
* ``histograms.hlog``: HdrHistogram interval log (:mod:`hif.harness.stats`), one line per tag and
  time bucket; tags ``chat.service``, ``chat.intended``, ``sla.sentence``, ``sla.token``,
  ``sla.bound``, ``poll``, ``gen.loop_lag``, ``gen.send_lag``.
* ``summary.json``: :class:`LoadSummaryData`. ``soak_summary.json``: :class:`SoakSummaryData`.
  ``report.json``: :class:`ReportData` (v3 adds ``goodput`` and ``saturation``; v2: percentile
  dicts ``{count, p50_ms, p95_ms, p99_ms, max_ms}``; v1 wrote
  ``p50``/``p95``/``p99``/``max``, which :func:`upgrade_report` renames).
* ``chaos_events.jsonl``: the chaos event log entries (:mod:`hif.chaos`) inside the run's window,
  plus the last one before it marked ``"before_window": true``.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, NotRequired, TypedDict

from hif.errors import HarnessError

CHAT_SCHEMA: Final = "hif.chat.v2"  # v2 adds the streamed-chat fields and error class stream_error
EXPLANATION_SCHEMA: Final = "hif.explanation.v2"  # v2 adds the state rate_limited
# v2 adds explanations.rate_limited_rate; v3: slo.pass null when not gated, slo.reference, null
# percentiles where there was no data, featureset (requested/used),
# metrics (the scrapes) and chat.stream (--stream); gates carry their direction (op); v4 adds
# chat.goodput, goodput_rps, goodput_share and goodput_targets (gates goodput_rps>= and goodput_share>=)
SUMMARY_SCHEMA: Final = "hif.summary.v4"
METRICS_SCHEMA: Final = "hif.metrics.v1"
SOAK_SCHEMA: Final = "hif.soak.v2"  # v2: features may be null (none given), featureset (requested/used)
SOAK_SCHEMAS: Final = ("hif.soak.v1", SOAK_SCHEMA)  # versions --resume and the report read
REPORT_SCHEMA: Final = "hif.report.v4"  # v4 adds streamed chats: chat.stream, TTFT/TPOT series and windows
REPORT_SCHEMA_V3: Final = "hif.report.v3"  # goodput and saturation; read as is (no Streaming section)
REPORT_SCHEMA_V2: Final = "hif.report.v2"  # read as is (its views skip what it lacks)
REPORT_SCHEMA_V1: Final = "hif.report.v1"  # bare percentile keys; still read (see upgrade_report)
COMPARE_SCHEMA: Final = "hif.compare.v1"
CAPACITY_SCHEMA: Final = "hif.capacity.v2"  # v2: steps and frontier keyed by prompt_tokens too
CAPACITY_SCHEMAS: Final = ("hif.capacity.v1", CAPACITY_SCHEMA)  # versions the report and compare read

CHAT_FILE = "chat_results.jsonl"
EXPLANATION_FILE = "explanation_results.jsonl"
SUMMARY_FILE = "summary.json"
HISTOGRAM_LOG_FILE = "histograms.hlog"
CHAOS_EVENTS_FILE = "chaos_events.jsonl"
SOAK_SUMMARY_FILE = "soak_summary.json"
REPORT_JSON_FILE = "report.json"
REPORT_MD_FILE = "report.md"
METRICS_FILE = "metrics.jsonl"
CAPACITY_JSON_FILE = "capacity.json"
COMPARE_JSON_FILE = "compare.json"

ERROR_CLASSES = ("http_4xx", "http_5xx", "timeout", "connect", "protocol", "dropped", "stream_error")
EXPLANATION_STATES = ("complete", "failed", "expired", "shed", "rate_limited", "orphaned")

ErrorClass = Literal["http_4xx", "http_5xx", "timeout", "connect", "protocol", "dropped", "stream_error"]
ExplanationState = Literal["complete", "failed", "expired", "shed", "rate_limited", "orphaned"]
Granularity = Literal["sentence", "token"]  # as requested per chat; "mix" draws one of these


class ChatRecord(TypedDict):
    """One line of chat_results.jsonl."""

    v: Literal["hif.chat.v1", "hif.chat.v2"]
    ts: float | None  # actual send
    intended_ts: float | None  # token-bucket grant / schedule slot
    latency_ms: float | None  # send -> full response (streamed: -> last content event): service time
    intended_latency_ms: float | None  # intended start -> the same end: free of coordinated omission
    status: int  # HTTP status, 0 when no response
    error_class: ErrorClass | None
    error: str | None
    tenant: str | None
    attached: bool
    granularity: Granularity | None
    trace_id: str | None
    explanation_state: str | None  # the state in the chat answer
    chaos: list[str]  # active chaos flags at the send
    shard: str  # "i/N"
    late: bool
    run: str  # run id (a soak segment's label)
    # v2, streamed chats only (--stream); docs/load.md defines each. Times from the actual send,
    # ``intended_*`` from the intended start; null where the stream never got that far.
    stream: NotRequired[bool]
    ttfb_ms: NotRequired[float | None]  # first body byte
    ttft_ms: NotRequired[float | None]  # first event with non-empty delta.content
    ttfo_ms: NotRequired[float | None]  # first event with any output (content, reasoning, tool call)
    intended_ttft_ms: NotRequired[float | None]
    intended_ttfo_ms: NotRequired[float | None]
    content_chunks: NotRequired[int]
    tpot_ms: NotRequired[float | None]  # (last - first content event) / (output tokens - 1)
    itl_max_ms: NotRequired[float | None]  # the largest per-token gap (null without a tokenizer)
    output_tokens: NotRequired[int | None]  # local count, else the server's completion_tokens
    output_tokens_per_s: NotRequired[float | None]  # output tokens / (send -> last content event)
    token_source: NotRequired[Literal["local", "server"] | None]
    prompt_tokens_server: NotRequired[int | None]
    completion_tokens_server: NotRequired[int | None]
    prompt_tokens_local: NotRequired[int | None]
    completion_tokens_local: NotRequired[int | None]


class ExplanationRecord(TypedDict):
    """One line of explanation_results.jsonl."""

    v: Literal["hif.explanation.v1", "hif.explanation.v2"]
    ts: float  # chat response time
    trace_id: str | None
    tenant: str | None
    granularity: str  # the requested one (the SLA p95 split uses it)
    resolved_granularity: str | None
    state: ExplanationState
    sla_ms: float | None
    sla_bound_ms: float | None
    polls: int
    graph_ok: bool | None
    degraded: list[Any]
    attribution: Any
    error: str | None
    chaos: list[str]  # active chaos flags at the chat response
    shard: str
    run: str


class Percentiles(TypedDict):
    """summary.json's latency summary (:meth:`hif.harness.stats.LatencyHistogram.summary`)."""

    count: int
    mean_ms: float | None  # v3: null with no values (v2 wrote 0.0)
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p99_9_ms: float | None


class ReportPercentiles(TypedDict):
    """report.json's latency summary (:meth:`hif.harness.report.hist.SparseHist.summary`); null
    figures where there were no values."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


# "pass" is a Python keyword, hence the functional syntax. A gate's value and verdict are null when
# the run produced nothing to judge (no token traces, say).
SloGate = TypedDict(
    "SloGate",
    {
        "name": str,
        "threshold": float,
        "value": float | None,
        "pass": bool | None,
        "op": NotRequired[Literal["<=", ">="]],  # summary v3: the gate's direction (before: always <=)
    },
)
# "pass" is null when no gate was given ("not gated"); "reference" holds the runbook's example
# targets judged against this run, for reading only: they never set "pass" or the exit code.
SloResult = TypedDict(
    "SloResult",
    {
        "gates": list[SloGate],
        "pass": bool | None,
        "gated": NotRequired[bool],
        "reference": NotRequired[list[SloGate]],
    },
)


class FeaturesetChoice(TypedDict):
    """Which featureset a run asked for and which it used (they differ only when none was given)."""

    requested: str
    given: bool
    used: str
    note: str | None


class MetricsScrapes(TypedDict):
    """The run's scrapes of the /metrics endpoints (lines in metrics.jsonl)."""

    urls: dict[str, str]
    file: str | None
    every_s: float
    scrapes: int
    errors: dict[str, str]


class MetricsScrape(TypedDict):
    """One line of metrics.jsonl: one endpoint's samples at one moment (histogram buckets left out)."""

    v: Literal["hif.metrics.v1"]
    ts: float
    component: str  # gateway | explainer
    url: str
    ok: bool
    error: str | None
    samples: list[list[Any]]  # [name, {label: value}, value]


class SummaryChat(TypedDict):
    requests: int
    ok: int
    errors: int
    rps: float
    success_rate: float
    error_rate: float
    http_4xx_rate: float
    http_5xx_rate: float
    by_status: dict[str, int]
    by_error_class: dict[str, int]
    late: int
    dropped: int
    latency_ms: Percentiles
    intended_latency_ms: Percentiles
    stream: NotRequired[SummaryStream]  # v3, --stream runs
    # v4: hif.harness.goodput's definition, counted live: good chats, per second of the load window,
    # share of all chats (null without chats) and the targets judged against (the gates, else the
    # runbook's reference)
    goodput: NotRequired[int]
    goodput_rps: NotRequired[float]
    goodput_share: NotRequired[float | None]
    goodput_targets: NotRequired[dict[str, Any]]


class SummaryStream(TypedDict):
    """Streamed chats (v3): latency_ms above is end-to-end to the last content event."""

    streams: int
    ttfb_ms: Percentiles
    ttft_ms: Percentiles
    ttfo_ms: Percentiles
    intended_ttft_ms: Percentiles
    intended_ttfo_ms: Percentiles
    itl_ms: Percentiles  # empty (count 0) without a local tokenizer: TPOT stands in
    tpot_ms: Percentiles
    output_tokens: int
    output_tokens_per_s: float  # aggregate over the load window
    token_source: Literal["local", "server", "none"]
    usage_compared: int
    usage_mismatch_rate: float | None  # local vs server completion tokens


class SlaSplit(TypedDict):
    sentence: Percentiles
    token: Percentiles


class SummaryExplanations(TypedDict):
    attached: int
    traces: int
    by_state: dict[str, int]
    complete_rate: float
    failed_rate: float
    expired_rate: float
    shed_rate: float
    rate_limited_rate: NotRequired[float]  # v2
    orphaned_rate: float
    expired_failed_rate: float
    sla_ms: SlaSplit
    sla_bound_ms: Percentiles
    polling: dict[str, Any]


class SummaryGenerator(TypedDict):
    valid: bool
    reasons: list[str]
    target_rps: float
    achieved_rps: float
    workers: int
    loop_lag_ms: Percentiles
    send_lag_ms: Percentiles


class LoadSummaryData(TypedDict):
    """summary.json: one load run (or one shard, or one soak segment)."""

    v: Literal["hif.summary.v1", "hif.summary.v2", "hif.summary.v3", "hif.summary.v4"]
    run_id: str | None
    shard: str
    started_at: float
    ended_at: float
    duration_s: float
    load_ended_at: float
    drain_s: float
    stopped_by: str
    mode: Literal["open", "closed"]
    settings: dict[str, Any]
    chat: SummaryChat
    explanations: SummaryExplanations
    generator: SummaryGenerator
    slo: SloResult
    histograms: dict[str, str]  # tag -> base64 HDR histogram
    buckets: list[dict[str, Any]]
    exit_code: int
    processes: NotRequired[int]  # --processes N > 1
    featureset: NotRequired[FeaturesetChoice | None]  # v3; null when nothing was attached
    metrics: NotRequired[MetricsScrapes]  # v3


class SoakSummaryData(TypedDict):
    """soak_summary.json: the soak's plan, one point per finished segment, and the drift verdicts."""

    v: Literal["hif.soak.v1", "hif.soak.v2"]
    status: Literal["running", "interrupted", "finished"]
    started_at: float
    updated_at: float
    base_url: str
    features: str | None  # as given; null: none given (v2)
    featureset: NotRequired[FeaturesetChoice]  # v2: what was asked for and used
    tenant_id: str | None
    plan: dict[str, Any]
    slo: dict[str, float]
    metrics_urls: dict[str, str]
    baseline_health: dict[str, Any] | None
    segments: list[dict[str, Any]]
    series: dict[str, Any]
    drift: dict[str, Any]
    resumes: int
    checkpoint: dict[str, Any]


class ReportStream(TypedDict):
    """Streamed chats (v4), from the chat records: TTFT from the send and from the intended start,
    and TPOT per request. ITL needs the per-token gaps, which no record has: it comes from
    histograms.hlog's ``stream.itl`` intervals, absent without them (no local tokenizer)."""

    streams: int
    ttft_ms: ReportPercentiles
    intended_ttft_ms: ReportPercentiles
    tpot_ms: ReportPercentiles
    itl_ms: NotRequired[ReportPercentiles]


class ReportChat(TypedDict, total=False):
    requests: int
    latency_ms: ReportPercentiles
    intended_latency_ms: ReportPercentiles
    stream: ReportStream  # v4, runs that streamed


class ReportExplanations(TypedDict, total=False):
    sla_ms: dict[str, ReportPercentiles]
    sla_bound_ms: dict[str, ReportPercentiles]


class ReportData(TypedDict):
    """report.json (v4). Only the parts a reader relies on are typed in depth."""

    schema: Literal["hif.report.v4"]
    generated_at: float
    inputs: dict[str, Any]
    run: dict[str, Any]
    chat: ReportChat
    explanations: ReportExplanations
    histograms: dict[str, str]
    metrics: dict[str, Any]
    chaos: dict[str, Any]
    slo: dict[str, Any]
    generator: list[Any]
    series: dict[str, Any]
    soak: dict[str, Any] | None
    # v3 (absent in a report upgraded from v1/v2): hif.harness.goodput's figures for the whole run,
    # and hif.harness.report.saturation's verdict
    goodput: NotRequired[dict[str, Any]]
    saturation: NotRequired[dict[str, Any]]
    # a results dir holding a capacity search or a comparison: the saved file, shown as a section
    # (absent or null: none; optional keys, so v4 readers read them or not)
    capacity: NotRequired[ReportCapacity | None]
    compare: NotRequired[ReportCompare | None]


class ReportCapacity(TypedDict):
    """report.json's capacity section: capacity.json as saved, and where it was read."""

    source: str
    data: CapacityData


class ReportCompare(TypedDict):
    """report.json's comparison section: compare.json as saved, and where it was read."""

    source: str
    data: CompareData


class CompareRow(TypedDict):
    """One compared metric: A's value, B's, B - A and its bootstrap interval (null: no data)."""

    name: str
    a: float | None
    b: float | None
    difference: float | None
    relative: float | None
    ci: list[float] | None
    samples: list[float]
    worse_when: Literal["higher", "lower"]
    verdict: Literal["worse", "better", "within_noise", "no_data"]
    intervals: NotRequired[list[list[float] | None]]  # capacity frontiers: each search's interval


class CompareData(TypedDict):
    """compare.json: ``hif compare A B``."""

    schema: Literal["hif.compare.v1"]
    generated_at: float
    a: dict[str, Any]
    b: dict[str, Any]
    settings_differences: list[str]
    forced: bool
    method: dict[str, Any]
    metrics: list[CompareRow]
    worse: list[str]
    better: list[str]
    fail_on: list[str]
    failed: list[str]
    exit_code: int


class CapacityGate(TypedDict):
    """One gate judged on one step (after its warm-up)."""

    name: str
    kind: Literal["ceiling", "floor"]
    threshold: float
    value: float | None
    margin: float | None  # (threshold - value) / threshold for a ceiling; positive: room left
    samples: int
    min_samples: int
    verdict: Literal["pass", "fail", "inconclusive"]


class CapacityStep(TypedDict):
    """One step of the search: one run folder at one rate and attach rate."""

    index: int
    attach_rate: float
    prompt_tokens: NotRequired[int | None]  # v2: the step's prompt length (null: no such axis)
    rate_rps: float
    results_dir: str
    verdict: Literal["pass", "fail", "inconclusive", "invalid"]
    gates: list[CapacityGate]
    first_broken: str | None  # the gate with the most negative margin on a failing step
    achieved_rps: float
    generator_valid: bool
    reasons: list[str]
    saturated: bool
    repeat_of: int | None  # the step this one repeats (a verdict within noise of a threshold)
    idle_wait_s: float


class CapacityFrontier(TypedDict):
    """The highest passing rate for one attach rate, and the bracket it lies in."""

    attach_rate: float
    prompt_tokens: NotRequired[int | None]  # v2: the search's prompt length (null: no such axis)
    rate_rps: float | None  # null: no step passed (the lowest broke a gate, or was inconclusive)
    interval_rps: list[float] | None  # [highest pass, lowest fail]; the fail is rate_max when none failed
    first_broken: str | None
    broke_at_rps: NotRequired[float | None]  # the lowest rate whose step broke a gate (null: none broke)
    lowest_rps: NotRequired[float | None]  # the lowest rate stepped at
    steps: int
    reached_max: bool
    generator_short: bool  # a step stayed invalid: the generator could not offer the rate


class CapacityData(TypedDict):
    """capacity.json: ``hif capacity``."""

    schema: Literal["hif.capacity.v1", "hif.capacity.v2"]
    started_at: float
    ended_at: float
    settings: dict[str, Any]
    method: dict[str, Any]
    steps: list[CapacityStep]
    frontier: list[CapacityFrontier]
    status: Literal["finished", "lowest_step_failed", "no_rate_passed", "generator_short", "interrupted"]
    exit_code: int


# --- reading older versions -------------------------------------------------------------------

_V1_KEYS = {"p50": "p50_ms", "p95": "p95_ms", "p99": "p99_ms", "max": "max_ms"}


def first_document(
    dirs: typing.Sequence[Path], filename: str, schemas: typing.Collection[str]
) -> tuple[Path, dict[str, Any]] | None:
    """The first ``dirs/filename`` that exists, read and checked to carry one of ``schemas``; None
    when no dir holds one. Unreadable JSON or another schema is a :class:`HarnessError`."""
    for d in dirs:
        path = d / filename
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("schema") not in schemas:
            version = data.get("schema") if isinstance(data, dict) else None
            raise HarnessError(f"{path}: schema {version!r} is not one of {tuple(schemas)}")
        return path, data
    return None


def upgrade_report(data: dict[str, Any]) -> dict[str, Any]:
    """A report.json of any supported version, in the current version's keys (v1 -> v2: every
    percentile dict's ``p50``/``p95``/``p99``/``max`` become ``p50_ms``/.../``max_ms``; v2 -> v3
    and v3 -> v4 only add keys, which an older file lacks and the views do without)."""
    if data.get("schema") in (REPORT_SCHEMA_V2, REPORT_SCHEMA_V3):
        return {**data, "schema": REPORT_SCHEMA}
    if data.get("schema") != REPORT_SCHEMA_V1:
        return data
    out = _rename_percentiles(data)
    out["schema"] = REPORT_SCHEMA
    return typing.cast(dict[str, Any], out)


def _rename_percentiles(x: Any) -> Any:
    if isinstance(x, dict):
        if "count" in x and "p95" in x:
            return {_V1_KEYS.get(k, k): v for k, v in x.items()}
        return {k: _rename_percentiles(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rename_percentiles(v) for v in x]
    return x


# --- JSON Schema, generated from the definitions above ----------------------------------------

SCHEMAS: dict[str, tuple[type, str]] = {
    "chat_record": (ChatRecord, CHAT_SCHEMA),
    "explanation_record": (ExplanationRecord, EXPLANATION_SCHEMA),
    "summary": (LoadSummaryData, SUMMARY_SCHEMA),
    "metrics_scrape": (MetricsScrape, METRICS_SCHEMA),
    "soak_summary": (SoakSummaryData, SOAK_SCHEMA),
    "report": (ReportData, REPORT_SCHEMA),
    "compare": (CompareData, COMPARE_SCHEMA),
    "capacity": (CapacityData, CAPACITY_SCHEMA),
}


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        parts = [_schema_of(a, defs) for a in args]
        if all(set(p) == {"type"} for p in parts):  # float | None -> {"type": ["number", "null"]}
            return {"type": [p["type"] for p in parts]}
        if all(set(p) == {"enum"} or p == {"type": "null"} for p in parts):  # Literal[...] | None
            return {"enum": [v for p in parts for v in p.get("enum", [None])]}
        return {"anyOf": parts}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(args[1], defs)}
    if typing.is_typeddict(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: a definition may refer to itself
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _object_schema(td: Any, defs: dict[str, Any]) -> dict[str, Any]:
    # Read Required/NotRequired from the hints: under ``from __future__ import annotations``
    # Python 3.11's ``__required_keys__`` does not see them.
    props, required = {}, []
    for k, tp in typing.get_type_hints(td, include_extras=True).items():
        origin = typing.get_origin(tp)
        if origin in (typing.NotRequired, typing.Required):
            tp, needed = typing.get_args(tp)[0], origin is typing.Required
        else:
            needed = td.__total__
        props[k] = _schema_of(tp, defs)
        if needed:
            required.append(k)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if td.__doc__ and not td.__doc__.startswith(td.__name__ + "("):  # functional TypedDicts: no doc
        out["description"] = " ".join(td.__doc__.split())
    return out


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one file format, e.g. ``json_schema("chat_record")``."""
    td, version = SCHEMAS[name]
    defs: dict[str, Any] = {}
    body = _object_schema(td, defs)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{version}.schema.json",
        "title": td.__name__,
        **body,
    }
    if defs:
        schema["$defs"] = dict(sorted(defs.items()))
    return schema


def schema_files() -> Mapping[str, str]:
    """File name -> text of every published schema, as ``--write-schemas`` writes them."""
    return {f"{name}.schema.json": json.dumps(json_schema(name), indent=2) + "\n" for name in SCHEMAS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hif.harness.records", description=__doc__.split("\n")[0])
    p.add_argument("--write-schemas", type=Path, metavar="DIR", required=True, help="e.g. docs/schemas")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.write_schemas.mkdir(parents=True, exist_ok=True)
    for name, text in schema_files().items():
        (args.write_schemas / name).write_text(text)
        print(args.write_schemas / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
