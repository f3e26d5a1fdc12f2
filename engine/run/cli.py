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
from engine.errors import EXIT_USER_ERROR, ConfigError, UserError

HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "--resolve", "--info", "-c", "--package", "-p"}


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    for a in args:
        if a.startswith("-") and a.split("=")[0] not in HYDRA_FLAGS and a not in ("job", "hydra", "all"):
            raise ConfigError(f"unknown option {a!r}; usage: engine run [-m] [key=value ...]")
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    if not multirun:
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
            exit_code["value"] = 130 if result.status == "interrupted" else 1

    saved = sys.argv
    sys.argv = ["engine", *args]
    try:
        task()
    except SystemExit as exc:  # Hydra exits on its own errors; keep the code, lose nothing
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return exit_code["value"]
