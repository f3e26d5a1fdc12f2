"""Compose Hydra config from ``conf/`` and convert it to the typed schema.

The only place a DictConfig is handled: callers get an :class:`EngineConfig` or a
:class:`ConfigError` whose one line names the key path (and the config file where Hydra says).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from engine.config.schema import EngineConfig
from engine.errors import ConfigError

SCHEMA_NAME = "engine_schema"
_registered = False


def project_root() -> Path:
    """The directory holding ``conf/`` and ``specs/`` (the repository root)."""
    env = os.environ.get("ENGINE_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    return project_root() / "conf"


def register_schema() -> None:
    """Put the schema in Hydra's ConfigStore (once) so ``conf/config.yaml`` can extend it."""
    global _registered
    if not _registered:
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(name=SCHEMA_NAME, node=EngineConfig)
        _registered = True


def compose(overrides: Sequence[str] = (), with_hydra: bool = False) -> DictConfig:
    """Compose the root config with command-line style overrides (no run directory, no I/O).

    ``with_hydra``: keep the ``hydra`` node (its run directory, for instance).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_schema()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
    except Exception as exc:  # Hydra raises a zoo of types; all are user errors here
        raise hydra_error(exc) from None


def load_config(overrides: Sequence[str] = ()) -> EngineConfig:
    return to_typed(compose(overrides))


def run_dir_of(overrides: Sequence[str] = ()) -> str:
    """The run directory Hydra will make for these overrides (``hydra.run.dir``, resolved)."""
    cfg = compose(overrides, with_hydra=True)
    try:
        return str(OmegaConf.select(cfg, "hydra.run.dir", throw_on_resolution_failure=True))
    except OmegaConfBaseException as exc:
        raise ConfigError(_first_line(str(exc)), key="hydra.run.dir") from None


def to_typed(cfg: DictConfig) -> EngineConfig:
    """Check the composed config strictly and convert it to typed objects."""
    _reject_extra_keys(cfg, EngineConfig, "")
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_first_line(str(exc)), key=getattr(exc, "full_key", None)) from None
    assert isinstance(obj, EngineConfig)
    check_ranges(obj)
    return obj


def check_ranges(cfg: EngineConfig) -> None:
    """Values the types admit but no provider would: caught here, before anything is spent."""
    from engine.sandbox.config import validate_world

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(msg, key=key)

    validate_world(cfg.sandbox)  # its errors name sandbox.<key>
    hypers = [(f"models.{n}.hyperparameters", m.hyperparameters) for n, m in cfg.models.items()]
    hypers += [(f"sequence.pipelines.{p}.stages.{s}.hyperparameters", st.hyperparameters)
               for p, pc in cfg.sequence.pipelines.items() for s, st in pc.stages.items()]
    for key, h in hypers:
        need(h.n_epochs is None or 1 <= h.n_epochs <= 50, f"{key}.n_epochs",
             f"must be in 1..50, not {h.n_epochs}")
        need(h.batch_size is None or 1 <= h.batch_size <= 256, f"{key}.batch_size",
             f"must be in 1..256, not {h.batch_size}")
        lr = h.learning_rate_multiplier
        need(lr is None or 0 < lr <= 50, f"{key}.learning_rate_multiplier", f"must be in (0, 50], not {lr}")
    for n, m in cfg.models.items():
        need(bool(m.id.strip()), f"models.{n}.id", "must name a model")
    need(bool(cfg.judge.model.strip()), "judge.model", "must name a model")
    for n, p in cfg.probes.items():
        for field in ("items", "paraphrases"):
            value = getattr(p, field)
            need(value is None or value >= 1, f"probes.{n}.{field}",
                 f"must be at least 1 (or null: all), not {value}")
    stages = {"base"} | {s for pc in cfg.sequence.pipelines.values() for s in pc.stages}
    for i, pair in enumerate(cfg.analysis.comparisons):
        for name in pair:
            need(name in stages, f"analysis.comparisons[{i}]",
                 f"'{name}' is not a stage (stages: {', '.join(sorted(stages))})")


def _reject_extra_keys(node: Any, schema: Any, path: str) -> None:
    """OmegaConf lets ``+key=value`` add keys to a dataclass node and then drops them silently."""
    if not isinstance(node, DictConfig):
        return
    if dataclasses.is_dataclass(schema):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        hints = _hints(schema)
        for key in node.keys():
            name = str(key)  # a structured (dataclass) node's keys are field names: str
            full = f"{path}.{name}" if path else name
            if name not in fields:
                raise ConfigError(
                    f"unknown key '{name}'",
                    key=full,
                    hint=f"valid keys under '{path or '<root>'}': {', '.join(fields)}",
                )
            _reject_extra_keys(node._get_node(key), hints.get(name), full)
    elif getattr(schema, "__origin__", None) is dict:
        value_type = schema.__args__[1]
        for key in node.keys():
            _reject_extra_keys(node._get_node(key), value_type, f"{path}.{str(key)}")


def _hints(cls: Any) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def hydra_error(exc: BaseException) -> ConfigError:
    """Turn whatever Hydra or OmegaConf raised into one clear line."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:  # a command-line override Hydra cannot parse: name it, and its key
        override = getattr(err, "override", None)
        if isinstance(override, str) and type(err).__name__ == "OverrideParseException":
            detail = re.sub(r"^Error parsing override '[^']*'\s*", "", str(err))
            detail = _first_line(detail) or "syntax error"
            name = re.split(r"[=~+]", override.lstrip("~+"), maxsplit=1)[0] or None
            return ConfigError(f"cannot parse override '{override}': {detail}", key=name,
                               hint="overrides are key=value; quote lists and strings for the shell")
    key = None
    message = None
    for err in chain:
        full_key = getattr(err, "full_key", None)
        if full_key:
            key = full_key
            message = _first_line(str(err))
            break
    text = str(exc)
    file = None
    m = re.match(r"In '([^']+)'", text)
    if m and m.group(1) != "config":
        file = f"conf/{m.group(1)}.yaml"
    if message is None:
        message = _first_line(re.sub(r"^In '[^']+': ", "", text))
        options = re.search(r"Available options in '([^']+)':\s*\n((?:\s+\S+\n?)+)", text)
        if options:
            names = ", ".join(options.group(2).split())
            message += f"; available options in '{options.group(1)}': {names}"
        elif "To append to your config use" in text:
            message += " (no such key; check its spelling against the schema)"
    return ConfigError(message, file=file, key=key)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return text.strip()


