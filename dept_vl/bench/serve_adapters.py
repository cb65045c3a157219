"""``dept-vl bench-serve --adapters K``: one server answering K adapters on one backbone, against one server of one
adapter and against K one-adapter servers (the peer: how a team serves K runs without multi-adapter serving).

The same run is loaded K times as K adapters (each its own weights in memory); requests are spread evenly over them.
Reported: requests/s, latency, errors, the mean batch the server formed, and its memory at rest (for the peer, the
servers' summed resident memory), with the ratios the targets hang on: K adapters / 1 adapter in throughput
(>= 0.9; paired: the two servers take turns round by round, the median of the per-round ratios) and memory
(<= 1.1)."""

from __future__ import annotations

import statistics

from .serve_load import WARMUP, ServerProcess, load, sample_requests


def adapter_args(checkpoint: str, names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--adapter", f"{name}={checkpoint}")]


def measure(servers: list[ServerProcess], bodies: list[bytes], warmup: list[bytes], clients: int) -> dict:
    if warmup:
        load(servers, warmup, clients)
    result = load(servers, bodies, clients)
    result["rss_mb"] = round(sum(s.rss_mb() for s in servers), 1)
    return result


def run_adapter_bench(checkpoint: str, adapters: int, clients: int = 16, requests: int = 2000, warmup: int = WARMUP,
                      settings=(), peer: bool = True, rounds: int = 4, log=print) -> dict:
    """1 adapter against ``adapters`` adapters on one server, paired: both servers run, and ``rounds`` rounds of
    ``requests / rounds`` requests go to one then the other (a b b a ...), so that the machine's drift cancels in the
    per-round ratios; then (``peer``) ``adapters`` one-adapter servers."""
    names = [f"a{i}" for i in range(adapters)]
    report = {"checkpoint": checkpoint, "adapters": adapters, "clients": clients, "requests": requests,
              "rounds": rounds}
    multi_label = f"{adapters} adapters"
    log(f"bench-serve: one adapter and {multi_label}, {rounds} rounds each, taking turns ...")
    started = ServerProcess.start_all([*adapter_args(checkpoint, names[:1]), *settings],
                                      [*adapter_args(checkpoint, names), *settings])
    pair = dict(zip(("one", multi_label), started))
    try:
        asked = {"one": names[:1], multi_label: names}
        bodies = {label: sample_requests(checkpoint, max(requests, warmup), asked[label]) for label in pair}
        per_round = {label: [] for label in pair}
        for label, server in pair.items():
            load([server], bodies[label][:warmup], clients) if warmup else None
        share = max(1, requests // rounds)
        for r in range(rounds):
            for label in (("one", multi_label) if r % 2 == 0 else (multi_label, "one")):
                chunk = bodies[label][(r * share) % len(bodies[label]):][:share]
                per_round[label].append(load([pair[label]], chunk, clients))
        for label, server in pair.items():
            report[label] = {**combine(per_round[label]), "rss_mb": round(server.rss_mb(), 1)}
        ratios = [m["requests_per_s"] / o["requests_per_s"] for o, m in zip(per_round["one"], per_round[multi_label])]
    finally:
        for server in pair.values():
            server.stop()
    if peer:
        log(f"bench-serve: {adapters} one-adapter servers ...")
        servers = ServerProcess.start_all(*([*adapter_args(checkpoint, [n]), *settings] for n in names))
        try:  # server i serves only a<i> (its default) and gets every len(servers)-th request
            peer_bodies = sample_requests(checkpoint, max(requests, warmup), None)
            report[f"{adapters} servers"] = measure(servers, peer_bodies[:requests], peer_bodies[:warmup], clients)
        finally:
            for server in servers:
                server.stop()
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    report["throughput_ratio"] = round(statistics.median(ratios), 3)
    report["throughput_ratio_quartiles"] = [round(q1, 3), round(q3, 3)]
    report["memory_ratio"] = round(report[multi_label]["rss_mb"] / report["one"]["rss_mb"], 3)
    return report


def combine(rounds: list[dict]) -> dict:
    """One server's rounds as one run: requests and errors summed, requests/s over their total time, latency
    percentiles and batch size the medians of the rounds'."""
    seconds = sum(r["seconds"] for r in rounds)
    total = sum(r["requests"] for r in rounds)
    middle = {key: statistics.median(r[key] for r in rounds) for key in ("p50_ms", "p95_ms", "p99_ms",
                                                                          "mean_batch_size")}
    return {"clients": rounds[0]["clients"], "requests": total, "errors": sum(r["errors"] for r in rounds),
            "seconds": round(seconds, 2), "requests_per_s": round(total / seconds, 2), **middle,
            "rounds_requests_per_s": [r["requests_per_s"] for r in rounds]}


def format_adapter_bench(report: dict) -> str:
    lines = [f"{'run':<14}{'requests':>9}{'errors':>7}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'batch':>7}{'RSS MB':>9}"]
    for label in [k for k in report if isinstance(report[k], dict)]:
        r = report[label]
        lines.append(f"{label:<14}{r['requests']:>9}{r['errors']:>7}{r['requests_per_s']:>8.1f}{r['p50_ms']:>8.1f}"
                     f"{r['p95_ms']:>8.1f}{r['mean_batch_size']:>7.2f}{r['rss_mb']:>9.1f}")
    q1, q3 = report["throughput_ratio_quartiles"]
    lines.append(f"{report['adapters']} adapters / 1: throughput {report['throughput_ratio']:.3f}x (paired over "
                 f"{report['rounds']} rounds, quartiles {q1:.3f}-{q3:.3f}), memory {report['memory_ratio']:.3f}x")
    return "\n".join(lines)
