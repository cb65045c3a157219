"""`dept-vl bench-serve`: the request bodies it sends, and one small run against a real server."""

import json

from dept_vl.bench.serve_load import BOUNDARY, format_serve_bench, multipart_body, sample_requests
from dept_vl.cli import main


def test_multipart_body_is_what_a_form_sends():
    body = multipart_body([("question", b"what?", None), ("image", b"\x89PNG..", "a.png")])
    assert body == (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="question"\r\n\r\nwhat?\r\n'
                    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"\x89PNG..\r\n" + \
        f"--{BOUNDARY}--\r\n".encode()


def test_sample_requests_are_the_test_split_repeated(tiny_easyvqa_run):
    bodies = sample_requests(str(tiny_easyvqa_run), 7)
    assert len(bodies) == 7 and all(b.count(b'name="image"') == 1 and b'name="question"' in b for b in bodies)
    assert b"\x89PNG" in bodies[0] and len(set(bodies)) > 1


def test_bench_serve_reports_load_latency_and_memory(tiny_easyvqa_run, tmp_path, capsys):
    out = tmp_path / "bench-serve.json"
    assert main(["bench-serve", "--checkpoint", str(tiny_easyvqa_run), "--clients", "4", "--requests", "12",
                 "--warmup", "4", "--max-wait-ms", "50", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    concurrent, sequential = report["concurrent"], report["sequential"]
    assert (concurrent["requests"], concurrent["errors"], sequential["errors"]) == (12, 0, 0)
    assert sequential["mean_batch_size"] == 1.0 and concurrent["mean_batch_size"] > 1.0
    assert concurrent["p50_ms"] <= concurrent["p95_ms"] <= concurrent["p99_ms"]
    assert report["exit_code"] == 0 and report["rss_mb_before"] > 50 and report["warmup_requests"] == 4
    assert report["rss_growth_mb"] == round(report["rss_mb_after"] - report["rss_mb_before"], 1)
    assert capsys.readouterr().out == format_serve_bench(report) + "\n"


def test_bench_serve_with_adapters_compares_one_server_of_k_with_k_servers(tiny_easyvqa_run, tmp_path, capsys):
    out = tmp_path / "adapters.json"
    assert main(["bench-serve", "--checkpoint", str(tiny_easyvqa_run), "--adapters", "2", "--clients", "4",
                 "--requests", "8", "--warmup", "2", "--rounds", "2", "--max-wait-ms", "20", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"one", "2 adapters", "2 servers"} <= set(report) and report["adapters"] == 2
    assert all(report[k]["errors"] == 0 and report[k]["requests"] == 8 for k in ("one", "2 adapters", "2 servers"))
    assert report["2 servers"]["rss_mb"] > 1.5 * report["one"]["rss_mb"]  # two backbones in memory
    assert report["throughput_ratio"] > 0 and "2 adapters / 1" in capsys.readouterr().out


def test_sample_requests_ask_the_adapters_in_turn(tiny_easyvqa_run):
    bodies = sample_requests(str(tiny_easyvqa_run), 4, ["a0", "a1"])
    assert [b'name="adapter"\r\n\r\na0' in b for b in bodies] == [True, False, True, False]
