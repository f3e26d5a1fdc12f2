"""Checks before ``engine run`` makes a run directory or touches the store.

A study that cannot run fails here with one line naming the key, file or line (exit 2), and
leaves nothing behind: no run directory, no store row, earlier outputs untouched. In order,
cheapest first: the config compiles (pure), the API key is set, the output directory can be
made, the store opens, URL datasets download and match their pins, and the provider answers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.config.load import run_dir_of
from engine.config.schema import EngineConfig
from engine.errors import ConfigError, UserError
from engine.plan.model import Plan


def before_run(cfg: EngineConfig, overrides: Sequence[str]) -> Plan:
    from engine.plan.compile import compile_plan
    from engine.run.provider import api_key, check_provider
    from engine.run.runner import fetch_datasets

    plan = compile_plan(cfg)
    api_key(cfg)
    check_output_dir(Path(run_dir_of(overrides)))
    check_store(cfg)
    fetch_datasets(cfg)  # a wrong sha256 or a bad download stops here; the data are then cached
    if any(cfg.datasets[f.dataset].source == "url" for f in plan.finetunes.values()):
        plan = compile_plan(cfg)  # validates the downloaded data
    check_provider(cfg, served_models(cfg, plan))
    return plan


def served_models(cfg: EngineConfig, plan: Plan) -> dict[str, str]:
    """The models the provider must serve, by the config key that names them."""
    models = {f"models.{n}.id": m.id for n, m in cfg.models.items()}
    if plan.n_judge_requests:
        models["judge.model"] = cfg.judge.model
    return models


def check_output_dir(run_dir: Path) -> None:
    """The run directory can be made and written (nothing is created here)."""
    path = run_dir.absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    problem = None
    if not probe.is_dir():
        problem = f"{probe} is not a directory"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = f"{probe} is not writable"
    if problem:
        raise ConfigError(f"cannot make the output directory: {problem}", file=str(run_dir),
                          key="hydra.run.dir")


def check_store(cfg: EngineConfig) -> None:
    """An existing store opens (read-only); a new one's directory can be made."""
    from engine.run.provider import namespace_for
    from engine.run.store import Store

    path = Path(cfg.store.path)
    if path.is_dir():
        raise UserError("the store path is a directory; it names a file", file=str(path), key="store.path")
    if path.exists() and not (path.is_file() and path.stat().st_size == 0):
        Store(path, namespace_for(cfg), readonly=True).close()
        if not os.access(path, os.W_OK):
            raise UserError("the store is not writable", file=str(path), key="store.path")
        return
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot make the store: {probe} is not a writable directory", file=str(path),
                        key="store.path")
