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

from omegaconf import DictConfig, ListConfig, OmegaConf
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


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the root config with command-line style overrides (no run directory, no I/O)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_schema()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    except Exception as exc:  # Hydra raises a zoo of types; all are user errors here
        raise hydra_error(exc) from None


def load_config(overrides: Sequence[str] = ()) -> EngineConfig:
    return to_typed(compose(overrides))


def to_typed(cfg: DictConfig) -> EngineConfig:
    """Check the composed config strictly and convert it to typed objects."""
    _reject_extra_keys(cfg, EngineConfig, "")
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_first_line(str(exc)), key=getattr(exc, "full_key", None)) from None
    assert isinstance(obj, EngineConfig)
    return obj


def config_to_dict(cfg: EngineConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _reject_extra_keys(node: Any, schema: Any, path: str) -> None:
    """OmegaConf lets ``+key=value`` add keys to a dataclass node and then drops them silently."""
    if not isinstance(node, DictConfig):
        return
    if dataclasses.is_dataclass(schema):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        hints = _hints(schema)
        for key in node.keys():
            full = f"{path}.{key}" if path else str(key)
            if key not in fields:
                raise ConfigError(
                    f"unknown key '{key}'",
                    key=full,
                    hint=f"valid keys under '{path or '<root>'}': {', '.join(fields)}",
                )
            _reject_extra_keys(node._get_node(key), hints.get(str(key)), full)
    elif getattr(schema, "__origin__", None) is dict:
        value_type = schema.__args__[1]
        for key in node.keys():
            _reject_extra_keys(node._get_node(key), value_type, f"{path}.{key}")


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


def to_container(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
