"""A results folder holds one run: a fresh run removes what an earlier run left beside its records."""

from __future__ import annotations

from pathlib import Path

from hif.harness import records
from hif.harness.load.results import ResultFiles

OLD = (
    records.SOAK_SUMMARY_FILE,
    records.METRICS_FILE,
    records.SUMMARY_FILE,
    records.REPORT_MD_FILE,
    records.CHAOS_EVENTS_FILE,
    "chart_soak.png",
)


def _leave_old_files(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name in OLD:
        (d / name).write_text("from an earlier run\n")


def test_a_fresh_run_removes_an_earlier_runs_files(tmp_path: Path) -> None:
    _leave_old_files(tmp_path)
    ResultFiles(tmp_path, append=False).close()
    assert [n for n in OLD if (tmp_path / n).exists()] == []
    assert (tmp_path / records.CHAT_FILE).read_text() == ""


def test_appending_segments_and_kept_files_stay(tmp_path: Path) -> None:
    _leave_old_files(tmp_path)
    ResultFiles(tmp_path, append=True).close()
    assert all((tmp_path / n).exists() for n in OLD)
    ResultFiles(tmp_path, append=False, keep=(records.SOAK_SUMMARY_FILE,)).close()  # a soak's first segment
    assert [n for n in OLD if (tmp_path / n).exists()] == [records.SOAK_SUMMARY_FILE]
