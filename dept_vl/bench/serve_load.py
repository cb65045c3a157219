"""``dept-vl bench-serve``: load on ``dept-vl serve``, from clients on this machine.

Starts the server (a subprocess, on a free loopback port), warms it up (200 requests), sends ``requests`` questions
from ``clients`` concurrent clients, then the same requests one at a time, and reports requests/s, latency
percentiles, the mean batch size the server formed, errors, and the server's resident memory at rest (read
``AT_REST_S`` after the last request) at start, after the warm-up and after the concurrent run: the growth between
the last two is what requests leave behind. The questions are the first examples of the checkpoint's test split,
their images sent as files.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .._dataclass import check_int, setting
from ..data.tasks import get_task
from ..errors import InputError
from ..runs.run_dir import SavedModel
from ..serve.settings import ServeSettings

BOUNDARY = "dept-vl-bench-boundary"
WARMUP = 200  # requests before memory is read
AT_REST_S = 1.5  # memory is read this long after the last request: the server gives free memory back when idle


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def multipart_body(fields: list[tuple[str, bytes, str | None]]) -> bytes:
    """A multipart/form-data body (boundary ``BOUNDARY``) of ``(name, value, filename or None)`` fields."""
    parts = []
    for name, value, filename in fields:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'
        head += f'; filename="{filename}"\r\nContent-Type: application/octet-stream' if filename else ""
        parts.append(head.encode() + b"\r\n\r\n" + value + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def sample_requests(checkpoint: str, count: int, adapters: list[str] | None = None) -> list[bytes]:
    """Multipart bodies of the first ``count`` test questions of the checkpoint's task (repeated if fewer); with
    ``adapters``, request i asks adapter i mod their number."""
    saved = SavedModel.find(checkpoint)
    task = saved.get_task()
    data = task.load(task.default_splits[2], saved.data_dir(task.name))
    bodies = []
    for example in data.examples[: min(count, 500)]:
        question = example.source.removeprefix(task.prefix).encode()
        fields = [("question", question, None)] if task.takes_question else []
        fields += [("image", _image_bytes(data.images[i]), "image.png") for i in example.image_ids]
        bodies.append(fields)
    return [multipart_body(bodies[i % len(bodies)] + ([("adapter", adapters[i % len(adapters)].encode(), None)]
                                                      if adapters else [])) for i in range(count)]


def _image_bytes(image) -> bytes:
    if isinstance(image, (str, Path)):
        return Path(image).read_bytes()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class ServerProcess:
    """``dept-vl serve --checkpoint CHECKPOINT *serve_args`` in a subprocess on a free loopback port; ready once
    /health answers. ``stop()`` sends SIGTERM and gives the exit code; its stderr is then in ``stderr``."""

    def __init__(self, checkpoint: str | None, *serve_args: str, wait: bool = True):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.stderr = ""
        serving = ["--checkpoint", str(checkpoint)] if checkpoint else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dept_vl.cli", "serve", *serving, "--port", self.url.rsplit(":", 1)[1],
             *serve_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.time() + 300
        while time.time() < deadline and self.process.poll() is None:
            try:
                self.get("/health")
                return
            except OSError:
                time.sleep(0.3)
        self.process.kill()
        raise InputError(f"dept-vl serve did not start: {self.process.communicate()[1].strip()[-500:]}")

    @classmethod
    def start_all(cls, *serve_args: list[str]) -> list["ServerProcess"]:
        """One server per argument list, started side by side; all stopped if one does not start."""
        servers = [cls(None, *args, wait=False) for args in serve_args]
        try:
            for server in servers:
                server.wait_ready()
        except BaseException:
            for server in servers:
                server.process.kill()
                server.process.wait()
            raise
        return servers

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, body: bytes) -> dict:
        """``POST /v1/predict`` of a ``multipart_body``; raises on anything but 200."""
        request = urllib.request.Request(self.url + "/v1/predict", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def rss_mb(self, at_rest: bool = True) -> float:
        """The server's resident memory (MB); ``at_rest``: after ``AT_REST_S`` with no request."""
        time.sleep(AT_REST_S if at_rest else 0)
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.process.terminate()
        self.stderr = self.process.communicate(timeout=120)[1]
        return self.process.returncode


def load(server: ServerProcess | list[ServerProcess], bodies: list[bytes], clients: int) -> dict:
    """Send ``bodies`` from ``clients`` threads (to several servers: request i to server i mod their number);
    requests/s, latency percentiles (ms), errors, mean batch size."""
    servers = server if isinstance(server, list) else [server]
    before = _health(servers)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        attempts = [_attempt(s) for s in servers]
        outcomes = list(pool.map(lambda i: attempts[i % len(servers)](bodies[i]), range(len(bodies))))
    seconds = time.perf_counter() - started
    after = _health(servers)
    latencies = sorted(1000 * t for t in outcomes if isinstance(t, float))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests": len(bodies), "errors": sum(not isinstance(t, float) for t in outcomes),
            "seconds": round(seconds, 2), "requests_per_s": round(len(bodies) / seconds, 2),
            "p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1), "p99_ms": round(cuts[98], 1),
            "mean_batch_size": round((after["requests"] - before["requests"]) / batches, 2) if batches else 0.0}


def _health(servers: list[ServerProcess]) -> dict:
    states = [s.get("/health") for s in servers]
    return {"batches": sum(h["batches"] for h in states), "requests": sum(h["requests"] for h in states)}


def _attempt(server: ServerProcess):
    def attempt(body: bytes):
        """Seconds the request took, or what went wrong."""
        started = time.perf_counter()
        try:
            server.post(body)
        except (OSError, ValueError) as err:  # refused, reset, HTTP 4xx/5xx (an OSError), unreadable reply
            return repr(err)
        return time.perf_counter() - started

    return attempt


@dataclass(kw_only=True)
class BenchServeConfig:
    """``dept-vl bench-serve``: load on ``dept-vl serve``: concurrent clients, then the same requests one at a time;
    throughput, latency, batch sizes, errors, the server's memory."""

    checkpoint: str = setting(help="a run's output dir or its model/ dir")
    clients: int = setting(16, "concurrent clients")
    requests: int = setting(400, "requests in each run")
    warmup: int = setting(WARMUP, "requests sent before memory is first read")
    sequential: bool = setting(True, "also send the requests one at a time, for the speed-up")
    adapters: int = setting(1, "above 1: the run served as this many adapters by one server, against one adapter and "
                            "against as many one-adapter servers (--no-peer: not those)")
    peer: bool = setting(True, "with --adapters: also measure as many one-adapter servers")
    rounds: int = setting(4, "with --adapters: the one-adapter and the K-adapter server take this many turns (the "
                          "requests split between them); the throughput ratio is the median of the turns' ratios")
    output_dir: str = setting("runs/bench", "where bench-serve.json goes")
    json: str | None = setting(None, "write the report here instead (default: OUTPUT/bench-serve.json)")
    server: ServeSettings = setting(factory=ServeSettings, help="the server's batching", flag={"flatten": True})

    def __post_init__(self) -> None:
        for name, minimum in (("clients", 1), ("requests", 1), ("warmup", 0), ("adapters", 1), ("rounds", 1)):
            check_int(name, getattr(self, name), minimum)


def run_serve_bench(config: BenchServeConfig | str, log=print, **settings) -> dict:
    """Measure ``config`` (or ``run_serve_bench("runs/x", clients=4, ...)``); return the report."""
    cfg = config if isinstance(config, BenchServeConfig) else BenchServeConfig(checkpoint=str(config), **settings)
    checkpoint, requests, warmup, clients = cfg.checkpoint, cfg.requests, cfg.warmup, cfg.clients
    batch, wait = cfg.server.max_batch_size, cfg.server.max_wait_ms
    bodies = sample_requests(checkpoint, max(requests, warmup))
    server = ServerProcess(checkpoint, "--max-batch-size", str(batch), "--max-wait-ms", str(wait))
    report = {"checkpoint": checkpoint, "max_batch_size": batch, "max_wait_ms": wait,
              "warmup_requests": warmup, "rss_mb_start": round(server.rss_mb(), 1)}
    bodies, warmup_bodies = bodies[:requests], bodies[:warmup]
    try:
        if warmup_bodies:  # first calls, and the allocator reaching its working size: then the growth measured
            load(server, warmup_bodies, clients)  # is what requests leave behind
        report["rss_mb_before"] = round(server.rss_mb(), 1)
        log(f"bench-serve: {requests} requests from {clients} clients ...")
        report["concurrent"] = load(server, bodies, clients)
        report["rss_mb_after"] = round(server.rss_mb(), 1)
        if cfg.sequential:
            log(f"bench-serve: the same {requests} requests one at a time ...")
            report["sequential"] = load(server, bodies, 1)
            report["speedup"] = round(report["concurrent"]["requests_per_s"] / report["sequential"]["requests_per_s"],
                                      2)
    finally:
        report["exit_code"] = server.stop()
    report["rss_growth_mb"] = round(report["rss_mb_after"] - report["rss_mb_before"], 1)
    return report


def format_serve_bench(report: dict) -> str:
    lines = [f"{'run':<12}{'clients':>8}{'requests':>9}{'errors':>7}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}"
             f"{'p99 ms':>8}{'batch':>7}"]
    for name in ("concurrent", "sequential"):
        if name in report:
            r = report[name]
            lines.append(f"{name:<12}{r['clients']:>8}{r['requests']:>9}{r['errors']:>7}{r['requests_per_s']:>8.1f}"
                         f"{r['p50_ms']:>8.1f}{r['p95_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['mean_batch_size']:>7.2f}")
    lines.append(f"server RSS {report['rss_mb_start']:.1f} MB at start, {report['rss_mb_before']:.1f} after "
                 f"{report['warmup_requests']} warm-up requests, {report['rss_mb_after']:.1f} after the concurrent run "
                 f"({report['rss_growth_mb']:+.1f})"
                 + (f"; throughput {report['speedup']:.2f}x one at a time" if "speedup" in report else ""))
    return "\n".join(lines)
