"""Running the app: load the checkpoint once, serve it with uvicorn until SIGTERM / Ctrl-C, which stop new
connections, let the requests in flight finish, and end with exit code 0."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from typing import Iterator

import uvicorn

from ..errors import OutputError
from ..fast import resolve_device
from ..inference.predict import Predictor
from .adapters import AdapterSet
from .app import create_app
from .settings import ServeConfig


def serve(config: ServeConfig, log=print) -> None:
    """Load the checkpoint once on ``config.device`` and serve it until SIGTERM / Ctrl-C."""
    runs = config.runs()
    resolve_device(config.device)  # a bad --device is refused before the model loads
    _check_port(config.host, config.port)
    if len(runs) == 1 and config.task:  # one run, a task of its several named
        name, run = next(iter(runs.items()))
        adapters = AdapterSet.of(Predictor(run, config.task, config.num_beams, config.backbone, config.device,
                                           compile=False), name)
    else:
        adapters = AdapterSet(config.device, config.backbone, config.num_beams)
        for name, run in runs.items():
            adapters.add(name, run)
    server = uvicorn.Config(create_app(adapters, config.settings), host=config.host, port=config.port,
                            access_log=config.access_log, log_level="warning")
    served = ", ".join(f"{name} ({a.predictor.task.name})" for name, a in adapters.adapters.items())
    log(f"dept-vl serve: {served} on http://{config.host}:{config.port} (Ctrl-C to stop)")
    GracefulServer(server).run()
    log("dept-vl serve: stopped")


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that the SIGTERM / Ctrl-C that stopped it (after the requests in flight were
    answered) ends the process normally, exit code 0; uvicorn would raise the signal again once stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _check_port(host: str, port: int) -> None:
    """A clear error, before the model is served, for a port that is taken or a host that cannot be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OutputError(f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port or "
                              "--host") from None

