"""``hydra/launcher=engine``: compile every job of a sweep, then run them all in one event loop.

Each job still gets its own run directory (Hydra's ``sweep.dir``/``sweep.subdir``), saved config
and tables; but the jobs share one provider, one rate limiter and one store per provider
identity, and nodes they have in common (a base model's probes, a common first fine-tune) run
once. Hydra's basic launcher (``hydra/launcher=basic``) still works and runs the jobs one by one.
"""

# No `from __future__ import annotations`: Hydra imports plugins outside sys.modules, where
# dataclasses cannot resolve string annotations.
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class EngineLauncherConf:
    _target_: str = "hydra_plugins.engine_launcher.engine_launcher.EngineLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="engine", node=EngineLauncherConf, provider="engine")


class EngineLauncher(Launcher):
    def __init__(self) -> None:
        super().__init__()
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from engine.config.load import to_typed
        from engine.run.cli import quiet_http_logs
        from engine.run.runner import complete_job, execute, prepare_job, summarize
        from engine.run.sweep import write_sweep_tables

        setup_globals()
        assert self.hydra_context is not None and self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Compiling %d jobs into one run", len(job_overrides))

        prepared: List[Tuple[JobReturn, Any, List[str]]] = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx

            def prepare(cfg: DictConfig, index: int = idx) -> Any:
                from hydra.core.hydra_config import HydraConfig

                return prepare_job(to_typed(cfg), Path(HydraConfig.get().runtime.output_dir), index)

            ret = run_job(hydra_context=self.hydra_context, task_function=prepare, config=sweep_config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            if ret.status == JobStatus.FAILED:  # a bad job stops the sweep before anything is spent
                from engine.errors import EXIT_USER_ERROR, UserError

                error = ret._return_value
                if isinstance(error, UserError):
                    print(f"{error} (sweep job #{idx}: {' '.join(filter_overrides(overrides))})", file=sys.stderr)
                    sys.exit(EXIT_USER_ERROR)
                raise error
            prepared.append((ret, ret.return_value, list(overrides)))

        jobs = [job for _, job, _ in prepared]
        quiet_http_logs()
        execution = execute(jobs)
        results = []
        for ret, job, _ in prepared:
            result = complete_job(job, execution)
            ret.return_value = result
            results.append(result)
            print(summarize(result))
        if execution.status == "completed":
            path = write_sweep_tables(sweep_dir, [(job, ov) for _, job, ov in prepared])
            print(f"Sweep of {len(jobs)} jobs: combined tables in {path}")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [ret for ret, _, _ in prepared]
