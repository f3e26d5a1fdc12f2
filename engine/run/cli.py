"""``engine run [-m] [overrides]``: run a study (or a sweep) through Hydra.

Before Hydra makes a run directory, the config is composed and compiled once, so a bad study
fails with one line (exit 2) and leaves nothing behind.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.config.load import conf_dir, load_config, register_schema, to_typed
from engine.errors import EXIT_INTERRUPTED, EXIT_RUN_ERROR, EXIT_USER_ERROR, ConfigError, UserError

HYDRA_FLAGS = {"-m", "--multirun", "--resolve"}
INSPECT_FLAGS = {"--cfg": ("job", "hydra", "all"), "-c": ("job", "hydra", "all"),
                 "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
                 "--package": None, "-p": None}
"""Hydra's flags that print the config or its sources instead of running (each takes a value)."""


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    overrides: list[str] = []
    inspecting = False
    i = 0
    while i < len(args):
        a = args[i]
        if a in INSPECT_FLAGS:
            inspecting = True
            allowed = INSPECT_FLAGS[a]
            if i + 1 < len(args) and (allowed is None or args[i + 1] in allowed):
                i += 2
                continue
            if a == "--info":  # a bare --info is allowed: it means --info all
                i += 1
                continue
            raise ConfigError(f"{a} needs one of {', '.join(allowed or ['a package'])}")
        if a.startswith("-") and a not in HYDRA_FLAGS:
            raise ConfigError(f"unknown option {a!r}; usage: engine run [-m] [--cfg job] [key=value ...]")
        if not a.startswith("-"):
            overrides.append(a)
        i += 1
    multirun = any(a in ("-m", "--multirun") for a in args)
    if not multirun and not inspecting:
        from engine.run.preflight import before_run

        before_run(load_config(overrides), overrides)  # fail fast, before any directory exists
    return _hydra(args)


def quiet_http_logs() -> None:
    """Hydra sets the root logger to INFO; per-request lines of the HTTP clients are noise."""
    for noisy in ("httpx", "httpx2", "openai", "aiohttp", "uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _hydra(args: list[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    register_schema()
    exit_code = {"value": 0}

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def task(dcfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        from engine.run.runner import run_study, summarize

        quiet_http_logs()
        try:
            cfg = to_typed(dcfg)
            result = run_study(cfg, Path(HydraConfig.get().runtime.output_dir))
        except UserError as exc:
            print(str(exc), file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        print(summarize(result))
        if result.status != "completed":
            exit_code["value"] = EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_RUN_ERROR

    saved = sys.argv
    sys.argv = ["engine", *args]
    try:
        task()
    except SystemExit as exc:  # Hydra exits on its own errors; keep the code, lose nothing
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return exit_code["value"]
