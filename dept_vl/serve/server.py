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
from ..training.predict import Predictor
from .app import create_app
from .settings import ServeSettings


def serve(checkpoint: str, task: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          settings: ServeSettings | None = None, device: str = "cpu", backbone: str | None = None,
          num_beams: int = 1, access_log: bool = False, log=print) -> None:
    predictor = Predictor(checkpoint, task, num_beams, backbone)
    predictor.model.to(device)
    _check_port(host, port)
    config = uvicorn.Config(create_app(predictor, settings), host=host, port=port, access_log=access_log,
                            log_level="warning")
    log(f"dept-vl serve: {predictor.task.name} from {checkpoint} on http://{host}:{port} (Ctrl-C to stop)")
    GracefulServer(config).run()
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

