"""ServeSettings: how ``dept-vl serve`` batches and what it accepts; ServeConfig: the whole ``dept-vl serve`` command
(what to serve, where, and those settings). The flags are generated from these fields. Needs nothing of the
``serve`` extra, so ``dept-vl --help`` works without it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._dataclass import check_int, check_number, setting
from ..errors import ConfigError


@dataclass
class ServeSettings:
    max_batch_size: int = setting(32, "requests answered together by one generate call at most")
    max_wait_ms: float = setting(10.0, "how long the first request of a batch waits for others to join it")
    api_key: str | None = setting(None, "require this key to predict ('Authorization: Bearer KEY' or 'X-API-Key: KEY')")
    max_upload_mb: float = setting(10.0, "larger requests are refused (413)")
    adapter_dir: str | None = setting(None, "let clients load runs under this directory at runtime (POST /v1/adapters; "
                                      "nothing outside it), and remove adapters (DELETE /v1/adapters/NAME)")

    def __post_init__(self):
        check_int("max_batch_size", self.max_batch_size, 1)
        self.max_wait_ms = check_number("max_wait_ms", self.max_wait_ms, minimum=0)
        self.max_upload_mb = check_number("max_upload_mb", self.max_upload_mb, above=0)
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key must not be empty (leave it out to serve without a key)")
        if self.adapter_dir is not None and not Path(self.adapter_dir).is_dir():
            raise ConfigError(f"--adapter-dir {self.adapter_dir} is not a directory")


@dataclass(kw_only=True)
class ServeConfig:
    """``dept-vl serve``: a checkpoint behind a web page at / and an HTTP API (POST /v1/predict), answering in
    batches."""

    checkpoint: str | None = setting(None, "a run's output dir or its model/ dir: one adapter, named after the run's "
                                     "directory")
    adapter: list[str] | None = setting(None, "NAME=RUN: serve this run as adapter NAME (repeatable); every run on "
                                        "one frozen backbone", flag={"action": "append", "metavar": "NAME=RUN"})
    task: str | None = setting(None, "the task it answers (default: the task the checkpoint was trained on)")
    host: str = setting("127.0.0.1", "address to listen on (127.0.0.1: this machine only)")
    port: int = setting(8000, "port to listen on")
    device: str = setting("auto", "auto (CUDA when there is one) | cpu | cuda | cuda:N")
    backbone: str | None = setting(None, "load the text backbone from here instead of the saved path or name")
    num_beams: int = setting(1, "1 = greedy; >1 = beam search")
    access_log: bool = setting(False, "log every request")
    settings: ServeSettings = setting(factory=ServeSettings, help="batching and limits", flag={"flatten": True})

    def __post_init__(self) -> None:
        check_int("port", self.port, 0)
        check_int("num_beams", self.num_beams, 1)
        if not self.checkpoint and not self.adapter:
            raise ConfigError("give --checkpoint RUN, or --adapter NAME=RUN for each run to serve")

    def runs(self) -> dict[str, str]:
        """adapter name -> run: --checkpoint's (named after its directory), then each --adapter."""
        runs = {}
        if self.checkpoint:
            runs[_run_name(self.checkpoint)] = self.checkpoint
        for item in self.adapter or []:
            name, sep, run = item.partition("=")
            if not sep or not name or not run:
                raise ConfigError(f"--adapter takes NAME=RUN, got {item!r}")
            if name in runs:
                raise ConfigError(f"--adapter {name}: two runs named {name!r}")
            runs[name] = run
        return runs


def _run_name(path: str) -> str:
    """An adapter's name from its run's directory (``runs/easyvqa-dept`` and ``runs/easyvqa-dept/model``: easyvqa-dept)."""
    parts = Path(path).resolve().parts
    return parts[-2] if parts[-1] == "model" and len(parts) > 1 else parts[-1]
