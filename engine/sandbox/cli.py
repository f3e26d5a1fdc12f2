"""``engine sandbox [--host H] [--port N] [--specs DIR] [--state DIR] [key=value ...]``: serve until Ctrl-C.

World overrides (``awareness=0 latency.mean_ms=50 limits.rpm=600``) apply on top of
conf/sandbox/default.yaml and are type-checked against WorldConfig.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from engine.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"engine sandbox: {message}", hint="see engine sandbox --help")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="engine sandbox",
        description="Serve the simulated OpenAI-compatible provider in the foreground until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--specs",
        default=None,
        help="specs directory with probes/ and judges/ (default: the project's specs/)",
    )
    p.add_argument("--state", default=None, help="keep files and jobs in this directory across restarts")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="world settings, e.g. awareness=0 latency.mean_ms=50 limits.rpm=600",
    )
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, not {args.port}")
    from engine.sandbox.config import build_world

    config = build_world(None, args.overrides, defaults=True)
    from engine.sandbox.server import serve_foreground

    try:
        serve_foreground(
            config, args.host, args.port, args.specs, args.state, announce=lambda s: print(s, flush=True)
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", hint="choose another --port"
        ) from None
    except KeyboardInterrupt:
        pass
    return 0
