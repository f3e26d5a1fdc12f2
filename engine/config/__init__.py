"""Typed configuration: the schema, and composing Hydra config into it."""

from engine.config.schema import EngineConfig

__all__ = ["EngineConfig"]
