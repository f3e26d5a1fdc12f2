"""Errors a user can cause, and how they reach the terminal.

Every error that bad input can cause is a :class:`UserError`: it carries where the problem is
(file, line, config key path) and how to fix it, and the CLI prints it as one line with exit code 2,
never a traceback. Anything else is a bug and keeps its traceback.

Hierarchy::

    EngineError
    ├── UserError                 exit 2: the user can fix it
    │   ├── ConfigError           a config key has a wrong value, type, or reference
    │   ├── SpecError             a spec file (probe set, rubric, dataset) is malformed
    │   ├── DatasetError          fine-tuning data is invalid, missing, or fails its sha256 pin
    │   ├── PlanError             the config compiles to an impossible plan (cycle, conflict)
    │   └── ProviderConfigError   the provider cannot be used as configured (no key, bad URL)

A run that could not finish (interrupted, or a provider failing throughout) is not an exception:
its tables hold what was done, and ``engine run`` exits with EXIT_RUN_ERROR (130 on Ctrl-C).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_USER_ERROR = 2
EXIT_RUN_ERROR = 1
EXIT_INTERRUPTED = 130


class EngineError(Exception):
    """Base class of the engine's own errors."""


@dataclass(eq=False)
class UserError(EngineError):
    """An error the user can fix. ``str()`` is the one line the CLI prints."""

    message: str
    file: str | None = None
    line: int | None = None
    key: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.key:
            where.append(f"key '{self.key}'")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return f"error: {text}"


class ConfigError(UserError):
    """A config key has a wrong value, type or reference."""


class SpecError(UserError):
    """A spec file (probe set, judge rubric, trivia table) is malformed."""


class DatasetError(UserError):
    """Fine-tuning data is invalid, missing, or does not match its pin."""


class PlanError(UserError):
    """The config describes an impossible plan: a cycle or a conflict."""


class ProviderConfigError(UserError):
    """The provider cannot be used as configured: a missing key, a bad URL."""

