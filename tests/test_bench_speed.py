"""dept-vl bench: a smoke test on a tiny config (every method and field; no timing assertions)."""

import json

from dept_vl.bench.report import format_table, write_report
from dept_vl.bench.speed import METHODS, BenchConfig, run_bench
from dept_vl.bench.quality import format_quality, run_quality
from dept_vl.cli import main

FIELDS = {"method", "train_step_s", "infer_s", "peak_mem_mb", "samples_per_s", "trainable_params", "train_step_s_vs_pt",
          "train_gflops", "train_tflops_per_s"}


def test_bench_reports_every_method(tmp_path, monkeypatch):
    import dept_vl.bench.speed as bench

    monkeypatch.setitem(bench.VISION_SHAPES, "tiny-clip-shape", dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=8, image_size=32))
    cfg = BenchConfig(batch_size=2, text_length=6, visual_tokens=4, feature_dim=16, answer_length=2, prompt_length=4,
                      r=4, max_length=32, m=10, steps=1, warmup=0, isolate=False, pad_to_max_length=True, paired=3,
                      encoder="tiny-clip-shape", image_size=32)
    report = run_bench(cfg, tmp_path, log=lambda *_: None)
    assert [r["method"] for r in report["results"]] == list(METHODS) + ["dept@max_length"]
    for row in report["results"]:
        assert FIELDS <= set(row) and row["train_step_s"] > 0 and row["infer_s"] > 0 and row["trainable_params"] > 0
    rows = {r["method"]: r for r in report["results"]}
    assert rows["pt"]["train_step_s_vs_pt"] == 1.0
    d = 64  # the tiny backbone: DePT's budget 4*64 + 32*4 + 4*64 = 640 = 10 vanilla prompt tokens
    projection = 16 * d + d + 2 * d + d  # linear + bias, LayerNorm, one image-index row
    assert rows["pt"]["trainable_params"] == rows["dept"]["trainable_params"] == 10 * d + projection
    # ADePT at the same budget: r = (640 - 4*64 - 64) // (2*64 + 1) = 2, so 4*64 + 2*(2*64 + 1) + 64 = 578
    assert rows["adept"]["trainable_params"] == 578 + projection and report["settings_at_budget"]["adept"] == {"r": 2}
    assert rows["bare"]["trainable_params"] == projection
    # counted FLOPs grow with the sequence: padded to max_length (4 + 32 tokens) against 4 + 4 + 6
    assert rows["dept@max_length"]["train_gflops"] > 1.5 * rows["dept"]["train_gflops"] > 0
    paired = {(p["a"], p["b"]): p for p in report["paired"]}
    assert set(paired) == {("dept", "pt"), ("dept", "bare"), ("dept@max_length", "dept")}
    assert all(p["pairs"] == 3 and 0 < p[f"{k}_ratio_q1"] <= p[f"{k}_ratio_median"] <= p[f"{k}_ratio_q3"]
               for p in paired.values() for k in ("step", "infer"))
    cache = report["feature_cache"]
    assert cache["visual_tokens"] == 1 + 16 and cache["speedup"] > 0 and cache["speedup_paired"]["pairs"] == 3
    assert (tmp_path / "tiny-clip-shape" / "config.json").is_file()  # the tower was built offline, by shape
    write_report(report, tmp_path / "b.json", tmp_path / "b.png")
    saved = json.loads((tmp_path / "b.json").read_text())
    assert set(saved) >= {"machine", "config", "results"} and saved["config"]["batch_size"] == 2
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    table = format_table(report)
    assert "dept@max_length" in table and "paired dept / bare" in table and "cached features" in table


def test_bench_cli_isolated_processes(tmp_path, capsys):
    code = main(["bench", "--methods", "dept", "--no-pad-to-max-length", "--steps", "1", "--warmup", "0",
                 "--batch-size", "2", "--text-length", "4", "--visual-tokens", "4", "--feature-dim", "8",
                 "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [r["method"] for r in report["results"]] == ["dept"]
    # timings and memory come from two fresh processes per method; the row holds both
    (row,) = report["results"]
    assert FIELDS <= set(row) and row["mem_kind"] == "cpu_peak_rss_above_start"
    assert row["train_step_s"] > 0 and row["peak_mem_mb"] > 0 and row["train_step_s_vs_pt"] is None  # no pt row
    assert "step/pt" in capsys.readouterr().out and (tmp_path / "bench.png").is_file()


def test_quality_trains_every_method(tmp_path):
    report = run_quality(tmp_path, steps=2, log=lambda *_: None, k_shot=16, test_examples=8, batch_size=4,
                         cache_dir=str(tmp_path / "cache"), tensorboard=False)
    rows = {r["method"]: r for r in report["results"]}
    assert list(rows) == ["pt", "dept", "adept", "lora", "full"]
    assert rows["pt"]["trainable_params"] == rows["dept"]["trainable_params"]  # same budget
    assert rows["adept"]["trainable_params"] <= rows["dept"]["trainable_params"]  # within it
    assert rows["full"]["trainable_params"] > rows["dept"]["trainable_params"] + 1_000_000  # the whole T5
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows.values())
    assert "accuracy" in format_quality(report)


def test_quality_runs_each_seed_of_a_named_recipe(tmp_path, capsys):
    assert main(["bench", "--quality", "--quality-config", "easyvqa_offline", "--quality-methods", "dept",
                 "--quality-steps", "1", "--seeds", "0,1", "--quality-set", "k_shot=8", "--quality-set",
                 "test_examples=4", "--quality-set", "batch_size=4", "--quality-set", f"cache_dir={tmp_path / 'c'}",
                 "--output-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["method"], r["seed"]) for r in report["results"]] == [("dept", 0), ("dept", 1)]
    assert report["recipe"] == "easyvqa_offline" and report["train"]["k_shot"] == 8
    assert (tmp_path / "dept-seed0" / "model").is_dir() and (tmp_path / "dept-seed1" / "model").is_dir()
    capsys.readouterr()
    assert main(["bench", "--quality", "--quality-set", "k_shot"]) == 2
    assert main(["bench", "--quality", "--seeds", "0,x"]) == 2
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err


def test_bench_compiled(tmp_path, capsys):
    """--compile: compile seconds, graphs and graph breaks per row, apart from the step times."""
    code = main(["bench", "--methods", "dept", "--no-pad-to-max-length", "--steps", "2", "--warmup", "0",
                 "--batch-size", "2", "--text-length", "5", "--visual-tokens", "4", "--feature-dim", "8",
                 "--no-isolate", "--paired", "0",
                 "--compile", "--compile-backend", "aot_eager", "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["config"]["compile"] is True
    (row,) = report["results"]
    assert FIELDS <= set(row) and row["compile_s"] > 0 and row["graph_breaks"] == 0
    assert row["compiled_graphs"] == 2  # the training step and the decode step, one bucket each
    assert "graph break" in capsys.readouterr().out
