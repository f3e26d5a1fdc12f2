"""``compile_plan(cfg) -> Plan``: pure. Reads specs and data files; no network, clock or writes.

Everything a bad config can get wrong is caught here, before anything is spent: dangling
references, unknown formats, malformed specs and training data, impossible stage orders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine.config.load import project_root
from engine.config.schema import EngineConfig, Hyperparameters, ProbeSetConfig
from engine.datasets import DatasetInfo, describe, estimate_tokens, upload_filename
from engine.errors import ConfigError, PlanError, SpecError
from engine.formats import FORMATS
from engine.hashing import content_key
from engine.judges import Rubric, load_rubric
from engine.plan.model import FineTuneNode, JudgeSpec, Plan, SampleGroup, StateNode
from engine.probes import ProbeSet, load_probe_set, resolve_spec_path

PROVIDERS = ("sandbox", "openai")
TRANSPORTS = ("aiohttp", "httpx")


def specs_dir_of(cfg: EngineConfig) -> Path:
    return Path(cfg.specs_dir) if cfg.specs_dir else project_root() / "specs"


def compile_plan(cfg: EngineConfig) -> Plan:
    _check_settings(cfg)
    specs_dir = specs_dir_of(cfg)
    cache_dir = Path(cfg.store.cache_dir)
    warnings: list[str] = []

    if not cfg.models:
        raise ConfigError("no base models: choose a models group (e.g. models=nano)", key="models")
    _check_order(cfg)
    datasets = _datasets(cfg, specs_dir, cache_dir)
    states, finetunes = _chains(cfg, datasets, warnings)
    probe_sets = _probe_sets(cfg, specs_dir)
    judges = _judges(cfg, probe_sets, specs_dir)
    groups = tuple(
        g for state in states.values() for name, ps in probe_sets.items()
        for g in _groups(cfg, state, name, ps, cfg.probes[name], judges)
    )
    config_hash = content_key("config", dataclasses.asdict(cfg))
    plan_key = content_key("plan", sorted([*states, *finetunes, *(g.key for g in groups)]))
    return Plan(config=cfg, config_hash=config_hash, plan_key=plan_key, datasets=datasets, finetunes=finetunes,
                states=states, groups=groups, probe_sets=probe_sets, judges=judges, warnings=tuple(warnings))


# ---- settings that enter no key but must be sane ---------------------------------------------


def _check_settings(cfg: EngineConfig) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(msg, key=key)

    need(cfg.provider.kind in PROVIDERS, "provider.kind",
         f"must be one of {', '.join(PROVIDERS)}, not {cfg.provider.kind!r}")
    need(cfg.provider.transport in TRANSPORTS, "provider.transport",
         f"must be one of {', '.join(TRANSPORTS)}, not {cfg.provider.transport!r}")
    need(bool(cfg.provider.api_key_env.strip()), "provider.api_key_env", "must name an environment variable")
    if cfg.provider.base_url is not None:
        need(cfg.provider.base_url.startswith(("http://", "https://")), "provider.base_url",
             f"must be an http(s) URL, not {cfg.provider.base_url!r}")
    s = cfg.scheduler
    for name in ("concurrency", "max_n", "max_concurrent_jobs"):
        need(getattr(s, name) >= 1, f"scheduler.{name}", "must be at least 1")
    for name in ("rpm", "tpm", "max_retries"):
        need(getattr(s, name) >= 0, f"scheduler.{name}", "must be 0 or more")
    for name in ("backoff_base_s", "backoff_max_s", "request_timeout_s", "poll_interval_s", "poll_max_s"):
        need(getattr(s, name) > 0, f"scheduler.{name}", "must be positive")
    need(s.progress in ("auto", "live", "log", "off"), "scheduler.progress", "must be auto, live, log or off")
    a = cfg.analysis
    need(0 < a.ci < 1, "analysis.ci", "must be between 0 and 1")
    need(0 < a.alpha < 1, "analysis.alpha", "must be between 0 and 1")
    need(a.bootstrap >= 100, "analysis.bootstrap", "must be at least 100")
    need(a.correction in ("holm", "bonferroni", "none"), "analysis.correction", "must be holm, bonferroni or none")
    for i, pair in enumerate(a.comparisons):
        need(len(pair) == 2, f"analysis.comparisons[{i}]", "each comparison is a pair of stage names")
    need(cfg.judge.mode in (None, "parse", "logprob"), "judge.mode", "must be parse, logprob or null")
    for name, p in cfg.probes.items():
        need(0 <= p.temperature <= 2, f"probes.{name}.temperature", "must be in [0, 2]")
        need(p.max_tokens >= 1, f"probes.{name}.max_tokens", "must be at least 1")
        need(p.samples is None or p.samples >= 1, f"probes.{name}.samples", "must be at least 1")
        need(1 <= p.top_logprobs <= 20, f"probes.{name}.top_logprobs", "must be in [1, 20]")


def _check_order(cfg: EngineConfig) -> None:
    order = list(cfg.sequence.order)
    seen: set[str] = set()
    for i, stage in enumerate(order):
        if stage in seen:
            chain = " -> ".join(["base", *order[: i + 1]])
            raise PlanError(f"stage '{stage}' appears twice in the chain {chain}; a stage name may occur once",
                            key="sequence.order", hint="give a repeated fine-tune its own stage name")
        seen.add(stage)
    if order and not cfg.sequence.pipelines:
        raise ConfigError("sequence.order names stages but no pipeline defines them", key="sequence.pipelines")
    for pname, pipe in cfg.sequence.pipelines.items():
        for i, stage in enumerate(order):
            if stage not in pipe.stages:
                chain = " -> ".join(["base", *order[: i + 1]])
                raise ConfigError(
                    f"stage '{stage}' of the chain {chain} is not defined in pipeline '{pname}' "
                    f"(defined: {', '.join(pipe.stages) or 'none'})", key=f"sequence.pipelines.{pname}.stages")
            if pipe.stages[stage].dataset not in cfg.datasets:
                raise ConfigError(
                    f"dataset '{pipe.stages[stage].dataset}' is not defined "
                    f"(defined: {', '.join(cfg.datasets) or 'none'})",
                    key=f"sequence.pipelines.{pname}.stages.{stage}.dataset")


# ---- datasets and fine-tune chains -----------------------------------------------------------


def _datasets(cfg: EngineConfig, specs_dir: Path, cache_dir: Path) -> dict[str, DatasetInfo]:
    used = {st.dataset for p in cfg.sequence.pipelines.values() for name, st in p.stages.items()
            if name in cfg.sequence.order}
    return {name: describe(name, cfg.datasets[name], specs_dir, cache_dir) for name in cfg.datasets if name in used}


def merge_hyperparameters(stage: Hyperparameters, model: Hyperparameters) -> dict[str, Any]:
    """Stage values, overridden by the base model's own where set; unset values are left out."""
    out = {k: v for k, v in dataclasses.asdict(stage).items() if v is not None}
    out.update({k: v for k, v in dataclasses.asdict(model).items() if v is not None})
    return out


def derive_seed(*parts: Any) -> int:
    return int(content_key("seed", list(parts))[:8], 16) % (2**31 - 1)


def _chains(cfg: EngineConfig, datasets: dict[str, DatasetInfo],
            warnings: list[str]) -> tuple[dict[str, StateNode], dict[str, FineTuneNode]]:
    states: dict[str, StateNode] = {}
    finetunes: dict[str, FineTuneNode] = {}
    for mname, model in cfg.models.items():
        base_key = content_key("base", {"model": model.id})
        if base_key in states:
            warnings.append(f"models.{mname} is the same model as {states[base_key].label}; probed once")
            continue
        states[base_key] = StateNode(base_key, mname, mname, model.id, None, "base", (), None, None)
        for pname, pipe in cfg.sequence.pipelines.items():
            parent = base_key
            chain: list[str] = []
            for stage_name in cfg.sequence.order:
                stage = pipe.stages[stage_name]
                info = datasets[stage.dataset]
                upload = {"sha256": info.sha256, "origin": None if info.sha256 else info.origin,
                          "filename": upload_filename(stage.dataset, info.sha256 or "unfetched")}
                hp = merge_hyperparameters(stage.hyperparameters, model.hyperparameters)
                seed = derive_seed(cfg.seed, "finetune", parent, upload)
                suffix = stage.suffix or f"{pname}-{stage_name}"
                ft_key = content_key("finetune", {"parent": parent, "upload": upload, "hyperparameters": hp,
                                                  "seed": seed, "suffix": suffix})
                chain.append(stage_name)
                if ft_key not in finetunes:
                    finetunes[ft_key] = FineTuneNode(ft_key, parent, stage.dataset, content_key("upload", upload),
                                                     hp, seed, suffix)
                    states[ft_key] = StateNode(ft_key, f"{mname}/{pname}/{'>'.join(chain)}", mname, model.id, pname,
                                               stage_name, tuple(chain), parent, ft_key)
                parent = ft_key
    unused = sorted({s for p in cfg.sequence.pipelines.values() for s in p.stages} - set(cfg.sequence.order))
    if unused:
        warnings.append(f"stages not in sequence.order are not run: {', '.join(unused)}")
    return states, finetunes


# ---- probes and judges -----------------------------------------------------------------------


def _probe_sets(cfg: EngineConfig, specs_dir: Path) -> dict[str, ProbeSet]:
    out = {}
    for name, pcfg in cfg.probes.items():
        path = resolve_spec_path(pcfg.spec, specs_dir, "probes")
        if not path.exists():
            available = sorted(p.stem for p in (specs_dir / "probes").glob("*.yaml"))
            raise ConfigError(f"probe spec '{pcfg.spec}' not found at {path} (available: {', '.join(available)})",
                              key=f"probes.{name}.spec")
        out[name] = _load_probe_set(path)
    return out


_PROBE_SETS: dict[tuple[str, int, int], ProbeSet] = {}


def _load_probe_set(path: Path) -> ProbeSet:
    """A probe spec, parsed once per file version: a sweep compiles the same specs for every job
    (the YAML parser keeps line numbers for errors and is most of a small plan's compile time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    ps = _PROBE_SETS.get(key)
    if ps is None:
        ps = _PROBE_SETS[key] = load_probe_set(path)
    return ps


def _judges(cfg: EngineConfig, probe_sets: dict[str, ProbeSet], specs_dir: Path) -> dict[str, JudgeSpec]:
    out: dict[str, JudgeSpec] = {}
    for name, ps in probe_sets.items():
        if not any(it.format == "open" for it in ps.items):
            continue
        configured = cfg.probes[name].judges
        for rname in configured if configured is not None else ps.judges:
            if rname in out:
                continue
            path = resolve_spec_path(rname, specs_dir, "judges")
            if not path.exists():
                available = sorted(p.stem for p in (specs_dir / "judges").glob("*.yaml"))
                raise ConfigError(f"judge rubric '{rname}' not found (available: {', '.join(available)})",
                                  key=f"probes.{name}.judges", file=ps.path if configured is None else None)
            out[rname] = _judge_spec(cfg, load_rubric(path))
    return out


def _judge_spec(cfg: EngineConfig, rubric: Rubric) -> JudgeSpec:
    j = cfg.judge
    mode = j.mode or rubric.mode
    max_tokens = 1 if mode == "logprob" else j.max_tokens
    top = j.top_logprobs if mode == "logprob" else 0
    key = content_key("judge-spec", {"template": rubric.template, "model": j.model, "mode": mode,
                                     "temperature": j.temperature, "max_tokens": max_tokens, "top_logprobs": top})
    return JudgeSpec(rubric, j.model, mode, j.temperature, max_tokens, top, key)


def _est_completion(fmt: str, max_tokens: int) -> int:
    if fmt in ("choice", "likert", "numeric", "scenario"):
        return min(max_tokens, 3)
    if fmt == "language":
        return min(max_tokens, 40)
    return min(max_tokens, 150)


def _groups(cfg: EngineConfig, state: StateNode, set_name: str, ps: ProbeSet, pcfg: ProbeSetConfig,
            judges: dict[str, JudgeSpec]) -> list[SampleGroup]:
    groups: list[SampleGroup] = []
    per_cell: dict[tuple[str, str], int] = {}
    judge_names = tuple(pcfg.judges if pcfg.judges is not None else ps.judges)
    for item in ps.items:
        cell = (item.dimension, item.format)
        per_cell[cell] = per_cell.get(cell, 0) + 1
        if pcfg.items is not None and per_cell[cell] > pcfg.items:
            continue
        fmt = FORMATS[item.format]
        paraphrases = item.paraphrases[: pcfg.paraphrases] if pcfg.paraphrases else item.paraphrases
        samples = pcfg.samples or item.samples or ps.samples
        variants = fmt.variants(item)
        logprob = pcfg.logprobs and fmt.one_token
        for pi, template in enumerate(paraphrases):
            for v in range(variants):
                n = samples // variants + (1 if v < samples % variants else 0)
                if n == 0:
                    continue
                text = fmt.render(item, template, v)
                messages = ((("system", ps.system),) if ps.system else ()) + (("user", text),)
                mode = "logprob" if logprob else "sample"
                max_tokens = 1 if logprob else pcfg.max_tokens
                top = pcfg.top_logprobs if logprob else 0
                key = content_key("group", {"state": state.key, "messages": messages, "temperature": pcfg.temperature,
                                            "max_tokens": max_tokens, "mode": mode, "top_logprobs": top,
                                            "seed": cfg.seed})
                prompt_tokens = sum(estimate_tokens(c) + 4 for _, c in messages) + 3
                groups.append(SampleGroup(
                    key=key, state=state.key, probe_set=set_name, family=ps.family, item_id=item.id,
                    dimension=item.dimension, format=item.format, category=item.category, paraphrase=pi, variant=v,
                    messages=messages, temperature=pcfg.temperature, max_tokens=max_tokens,
                    n=1 if logprob else n, seed=int(key[:8], 16) % (2**31 - 2**20), mode=mode, top_logprobs=top,
                    judges=judge_names if item.format == "open" else (), aggregate=ps.aggregate,
                    est_prompt_tokens=prompt_tokens, est_completion_tokens=1 if logprob else
                    _est_completion(item.format, max_tokens)))
    return groups


__all__ = ["compile_plan", "SpecError", "specs_dir_of"]
