"""The ``engine`` command: a thin dispatcher to each subcommand's module.

    engine                      run the demo study on the sandbox (same as ``engine run``)
    engine plan [overrides]     show what a study will run and cost; no network
    engine run [overrides]      run a study (``-m`` for a multirun sweep)
    engine analyze RUN_DIR      recompute analysis.parquet from a run's tables
    engine report RUN_DIR       draw plots and report.md from a run's tables
    engine diff A B             compare two runs
    engine sandbox [...]        serve the simulated OpenAI-compatible provider

User errors print one line and exit with code 2; see engine/errors.py.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from engine.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError

# subcommand -> "module:function"; imported lazily so `engine plan` never loads the sandbox.
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("engine.plan.cli:main", "show the plan of a study and its estimated cost (no network)"),
    "run": ("engine.run.cli:main", "run a study; -m runs a sweep"),
    "analyze": ("engine.analysis.cli:analyze_main", "recompute the analysis of a run directory"),
    "report": ("engine.analysis.cli:report_main", "draw the plots and report.md of a run directory"),
    "diff": ("engine.diff:main", "compare two run directories"),
    "sandbox": ("engine.sandbox.cli:main", "serve the simulated OpenAI-compatible provider"),
}


def _usage() -> str:
    lines = ["usage: engine [COMMAND] [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "With no command, runs the demo study on the local sandbox.",
              "Overrides are Hydra's: key=value, group=option, +key=value; see README."]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[Sequence[str]], int]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args and args[0] in COMMANDS:
        command, rest = args[0], args[1:]
    else:
        command, rest = "run", args
    try:
        return int(_resolve(COMMANDS[command][0])(rest) or 0)
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    sys.exit(main())
