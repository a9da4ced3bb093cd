"""Property-based: whatever is in the chaos control file, no reader raises, and a fault is active
exactly when its flag validates and its window is open.

The oracle below restates the format's rules independently of hif/chaos.py, so a validation rule
dropped or loosened there shows up here as a mismatch.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hif import chaos
from hif.harness.chaos.cli import main as injector
from hif.harness.report import run as report

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.sampled_from([10**400, -(10**400)])  # beyond float: must not overflow anywhere
    | st.floats()  # NaN and the infinities included
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = (
    st.floats(min_value=-10, max_value=210)
    | st.integers(min_value=-10, max_value=210)
    | st.sampled_from([*chaos.MODES, *chaos.SEVERITIES, "never", None, math.nan, math.inf])
    | JSON
)
SPECS = st.dictionaries(st.sampled_from(chaos.FIELDS) | st.text(max_size=6), FIELD_VALUES, max_size=7) | JSON
FLAG_NAMES = st.sampled_from(chaos.FLAGS) | st.text(max_size=10)
DOCS = st.fixed_dictionaries(
    {"flags": st.dictionaries(FLAG_NAMES, SPECS, max_size=5)},
    optional={"version": JSON, "updated_at": FIELD_VALUES, "extra": JSON},
)
NOW = st.floats(min_value=-20, max_value=230)


def _number(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return type(v) is int and abs(v) < 10**300


def _valid(field: str, v: Any) -> bool:
    rules = {
        "percent": lambda: _number(v) and 0 <= v <= 100,
        "jitter_ms": lambda: _number(v) and v >= 0,
        "mode": lambda: isinstance(v, str) and v in ("fallback", "fail"),
        "severity": lambda: isinstance(v, str) and v in ("soft", "hard"),
        "enabled_at": lambda: _number(v),
        "expires_at": lambda: v is None or _number(v),
    }
    return bool(rules[field]())


def expected(doc: Any, now: float) -> tuple[set[str], set[str]]:
    """(active flags, invalid flags) as the format's rules define them."""
    if not isinstance(doc, dict) or not isinstance(doc.get("flags", {}), dict):
        return set(), set()
    active, invalid = set(), set()
    for name, spec in doc.get("flags", {}).items():
        if name not in chaos.FLAGS:
            continue
        if not isinstance(spec, dict) or not all(_valid(k, v) for k, v in spec.items() if k in chaos.FIELDS):
            invalid.add(name)
        elif spec.get("expires_at") is None or now < spec["expires_at"]:
            active.add(name)
    return active, invalid


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz") / "chaos.json"


def check_every_consumer(path: Path, now: float, doc: Any) -> None:
    want_active, want_invalid = expected(doc, now)
    state = chaos.read_state(path)
    assert set(state.active(now)) == want_active
    assert set(state.invalid) == want_invalid
    assert set(chaos.ChaosReader(path, min_interval_s=0.0).active(now)) == want_active
    assert set(chaos.parse(path.read_bytes()).active(now)) == want_active
    snap = report.chaos_snapshot(path)
    json.dumps(snap, allow_nan=False)  # report.json stays strict JSON whatever the file held
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert injector(["--status", "--path", str(path)]) == 0
        assert injector(["--status", "--json", "--path", str(path)]) == 0
    json.loads(out.getvalue().splitlines()[-1])


@FUZZ
@given(doc=DOCS, now=NOW)
def test_shaped_documents(control: Path, doc: dict[str, Any], now: float) -> None:
    control.write_text(json.dumps(doc))
    check_every_consumer(control, now, doc)


@FUZZ
@given(doc=JSON, now=NOW)
def test_arbitrary_json_values(control: Path, doc: Any, now: float) -> None:
    control.write_text(json.dumps(doc))
    check_every_consumer(control, now, doc)


@FUZZ
@given(data=st.binary(max_size=200) | DOCS.map(lambda d: json.dumps(d).encode()[:-3]), now=NOW)
def test_arbitrary_bytes(control: Path, data: bytes, now: float) -> None:
    control.write_bytes(data)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None  # not JSON: no chaos
    check_every_consumer(control, now, doc)


@FUZZ
@given(spec=SPECS, flag=st.sampled_from(chaos.FLAGS))
def test_enable_after_any_file_leaves_it_valid(control: Path, spec: Any, flag: str) -> None:
    control.write_text(json.dumps({"version": 1, "flags": {"drop-s3": spec}}))
    change = chaos.apply_change(enable=chaos.Fault(flag=flag), path=control, now=0.0)
    after = chaos.read_state(control)
    assert after.problems() == [] and flag in after.active(0.0)
    assert bool(change.dropped) == (
        "drop-s3" in expected({"flags": {"drop-s3": spec}}, 0.0)[1]
        or (isinstance(spec, dict) and any(k not in chaos.FIELDS for k in spec))
    )
