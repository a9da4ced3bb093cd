"""The harness's public API: load, soak, chaos and report, as the CLIs and the runbook use them.

    from hif.harness import LoadSettings, run_load_sync, ReportSettings, run_report

    summary = run_load_sync(LoadSettings(base_url="http://127.0.0.1:8080", duration_seconds=10))
    run_report(ReportSettings(results_dirs=(summary.data["settings"]["results_dir"],)))

Sub-packages: ``load/`` (the runner), ``soak/`` (segments of load runs), ``report/`` (report.json
and the views rendered from it), ``chaos/`` (the injector CLI), ``compare/`` (two results folders,
beyond noise or not), ``capacity/`` (the highest load at which every gate holds); ``records`` owns
every file format they write and read, ``stats`` the HDR histograms. Names resolve on first use (PEP 562), so
``import hif.harness`` stays cheap: ``hif chaos`` never loads numpy, ``hif load`` never loads the
report's matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LoadSettings": "hif.harness.load.settings",
    "RequestMix": "hif.harness.load.settings",
    "PollPolicy": "hif.harness.load.settings",
    "EXIT_OK": "hif.harness.load.settings",
    "EXIT_SLO_FAILED": "hif.harness.load.settings",
    "EXIT_PREFLIGHT": "hif.harness.load.settings",
    "EXIT_INVALID": "hif.harness.load.settings",
    "LoadSummary": "hif.harness.load.summary",
    "run_load": "hif.harness.load.run",
    "run_load_sync": "hif.harness.load.run",
    "SoakSettings": "hif.harness.soak.runner",
    "run_soak": "hif.harness.soak.runner",
    "run_soak_sync": "hif.harness.soak.runner",
    "ReportSettings": "hif.harness.report.settings",
    "build_report": "hif.harness.report.run",
    "save_report": "hif.harness.report.run",
    "render_report": "hif.harness.report.run",
    "run_report": "hif.harness.report.run",
    "ChatRecord": "hif.harness.records",
    "ExplanationRecord": "hif.harness.records",
    "LoadSummaryData": "hif.harness.records",
    "ReportData": "hif.harness.records",
    "SoakSummaryData": "hif.harness.records",
    "Percentiles": "hif.harness.records",
    "GoodputTargets": "hif.harness.goodput",
    "CompareSettings": "hif.harness.compare.settings",
    "build_compare": "hif.harness.compare.run",
    "run_compare": "hif.harness.compare.run",
    "CapacitySettings": "hif.harness.capacity.settings",
    "run_capacity": "hif.harness.capacity.run",
    "run_capacity_sync": "hif.harness.capacity.run",
}
# the command-line entry points (``main(argv) -> exit code``), as the runbook's shims call them
_MAINS: dict[str, str] = {
    "load_main": "hif.harness.load.cli",
    "soak_main": "hif.harness.soak.cli",
    "report_main": "hif.harness.report.cli",
    "chaos_main": "hif.harness.chaos.cli",
    "compare_main": "hif.harness.compare.cli",
    "capacity_main": "hif.harness.capacity.cli",
}

__all__ = [
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_PREFLIGHT",
    "EXIT_SLO_FAILED",
    "CapacitySettings",
    "ChatRecord",
    "CompareSettings",
    "ExplanationRecord",
    "GoodputTargets",
    "LoadSettings",
    "LoadSummary",
    "LoadSummaryData",
    "Percentiles",
    "PollPolicy",
    "ReportData",
    "ReportSettings",
    "RequestMix",
    "SoakSettings",
    "SoakSummaryData",
    "build_compare",
    "build_report",
    "capacity_main",
    "chaos_main",
    "compare_main",
    "load_main",
    "render_report",
    "report_main",
    "run_capacity",
    "run_capacity_sync",
    "run_compare",
    "run_load",
    "run_load_sync",
    "run_report",
    "run_soak",
    "run_soak_sync",
    "save_report",
    "soak_main",
]

if TYPE_CHECKING:
    from hif.harness.capacity.cli import main as capacity_main
    from hif.harness.capacity.run import run_capacity, run_capacity_sync
    from hif.harness.capacity.settings import CapacitySettings
    from hif.harness.chaos.cli import main as chaos_main
    from hif.harness.compare.cli import main as compare_main
    from hif.harness.compare.run import build_compare, run_compare
    from hif.harness.compare.settings import CompareSettings
    from hif.harness.goodput import GoodputTargets
    from hif.harness.load.cli import main as load_main
    from hif.harness.load.run import run_load, run_load_sync
    from hif.harness.load.settings import (
        EXIT_INVALID,
        EXIT_OK,
        EXIT_PREFLIGHT,
        EXIT_SLO_FAILED,
        LoadSettings,
        PollPolicy,
        RequestMix,
    )
    from hif.harness.load.summary import LoadSummary
    from hif.harness.records import (
        ChatRecord,
        ExplanationRecord,
        LoadSummaryData,
        Percentiles,
        ReportData,
        SoakSummaryData,
    )
    from hif.harness.report.cli import main as report_main
    from hif.harness.report.run import build_report, render_report, run_report, save_report
    from hif.harness.report.settings import ReportSettings
    from hif.harness.soak.cli import main as soak_main
    from hif.harness.soak.runner import SoakSettings, run_soak, run_soak_sync


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MAINS:
        value = importlib.import_module(_MAINS[name]).main
    else:
        raise AttributeError(f"module 'hif.harness' has no attribute {name!r}")
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return __all__
