"""Running the sandbox: in-process in a background thread, or in the foreground (``engine sandbox``).

    with SandboxServer(WorldConfig(awareness=0)) as sb:        # or: async with SandboxServer(...)
        client = openai.OpenAI(base_url=sb.base_url, api_key="sandbox")
        ...
        sb.stats()

One uvicorn worker on 127.0.0.1, port 0 (the OS picks a free one) unless told otherwise; uvloop and
httptools are used when installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from engine.sandbox.app import Sandbox, build_app
from engine.sandbox.config import WorldConfig, build_world

START_TIMEOUT_S = 15.0


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def uvicorn_config(app: Callable, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=4096,
        **kw,
    )


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def new_loop() -> asyncio.AbstractEventLoop:
    if _has("uvloop"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class SandboxServer:
    """The sandbox served from a background thread; a sync and an async context manager.

    ``world``: a WorldConfig (or a mapping of its fields; None: the dataclass defaults), with
    ``overrides`` (``"awareness=0"``, ``"latency.mean_ms=50"``) applied on top. ``specs_dir``: where
    ``probes/`` and ``judges/`` are (default: the project's specs/). ``state_dir``: keep files,
    jobs and batches there, and find them again on the next start (default: memory only).
    """

    def __init__(
        self,
        world: WorldConfig | dict | None = None,
        *,
        overrides: Sequence[str] = (),
        specs_dir: Path | str | None = None,
        state_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.config = build_world(world, overrides)
        self.sandbox = Sandbox(self.config, specs_dir, state_dir)
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    # ---- addresses ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the sandbox server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    @property
    def world_hash(self) -> str:
        return self.sandbox.hash

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        if self._thread is not None:
            return self
        sock = bind(self.host, self._requested_port)
        self.port = sock.getsockname()[1]
        # log_config=None: in-process, leave the host program's logging set-up alone
        self._server = uvicorn.Server(uvicorn_config(build_app(self.sandbox), log_config=None))
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the sandbox server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start in time")
            time.sleep(0.005)
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = self._loop = new_loop()
        asyncio.set_event_loop(loop)
        try:
            assert self._server is not None
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
        finally:
            sock.close()
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        self._thread = None
        self._server = None
        self.port = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> SandboxServer:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(self, *exc: object) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    # ---- the laboratory ----------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (its state belongs to that thread)."""
        loop = self._loop
        if loop is None or self._thread is None:
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def stats(self) -> dict:
        """The counters of GET /v1/sandbox/stats."""
        return self._call(self.sandbox.snapshot)

    def reset_stats(self) -> None:
        self._call(self.sandbox.reset_stats)

    def disposition(self, model: str) -> float:
        """The hidden disposition of a model (ground truth; the laboratory may look)."""
        m = self._call(lambda: self.sandbox.world.resolve(model))
        if m is None:
            raise KeyError(model)
        return m.disposition


def serve_foreground(
    config: WorldConfig,
    host: str,
    port: int,
    specs_dir: Path | str | None = None,
    state_dir: Path | str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until Ctrl-C (uvicorn handles the signal and shuts down gracefully)."""
    sandbox = Sandbox(config, specs_dir, state_dir)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"sandbox: OpenAI API at http://{shown}:{sock.getsockname()[1]}/v1 "
        f"(world {sandbox.hash[:12]}, {len(sandbox.catalog.probes)} probe prompts, "
        f"{len(sandbox.catalog.rubrics)} rubrics); Ctrl-C stops"
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    server = uvicorn.Server(uvicorn_config(build_app(sandbox)))
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.serve(sockets=[sock]))
    finally:
        sock.close()
        loop.close()
