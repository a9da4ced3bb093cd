"""The ``hif`` command: one subcommand per capability, each a thin shell over library code.

Subcommands are resolved lazily so ``hif load`` never imports torch and ``hif chaos`` starts fast.
Each entry point is ``main(argv: list[str]) -> int`` in the module named below; it parses its
flags, builds settings, calls one library function, and turns a HifError into one line + exit code.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("hif.demo", "the main job: embedded system + short load with a chaos window + report"),
    "serve": ("hif.serve", "start the embedded system: gateway + explainer workers + stores"),
    "gateway": ("hif.gateway._cli", "run the gateway alone (OpenAI-compatible chat, traces, metrics)"),
    "keys": ("hif.gateway._keys_cli", "issue API keys: `hif keys new` prints a token, stores its hash"),
    "explainer": ("hif.explainer.service.cli", "run explainer worker processes against the job queue"),
    "upstream-sim": ("hif.upstream._cli", "run the upstream LLM simulator as an HTTP server"),
    "featureset": ("hif.explainer.training.cli", "build / evaluate / list featuresets (SAE training)"),
    "load": ("hif.harness.load.cli", "run a load test (same flags as tests/load/load_runner.py)"),
    "soak": ("hif.harness.soak.cli", "run a soak test (same flags as tests/load/soak_runner.py)"),
    "chaos": ("hif.harness.chaos.cli", "toggle chaos flags (same flags as tests/chaos/chaos_injector.py)"),
    "report": ("hif.harness.report.cli", "render report.json/report.md from results"),
    "compare": ("hif.harness.compare.cli", "compare two results folders, beyond noise or not"),
    "capacity": ("hif.harness.capacity.cli", "search the highest load at which every SLO holds"),
}


def usage() -> str:
    lines = ["usage: hif COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<13} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines.append("\n`hif COMMAND --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from hif import __version__

        print(f"hif {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hif: unknown command {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
