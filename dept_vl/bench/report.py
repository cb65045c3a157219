"""The speed bench's report: a text table, a bar chart, and the JSON / PNG files (``dept-vl bench``)."""

from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_write, write_text


def format_table(report: dict) -> str:
    head = f"{'method':<16}{'step s':>10}{'infer s':>10}{'mem MB':>10}{'samples/s':>11}{'params':>13}" \
           f"{'step/pt':>9}{'infer/pt':>9}{'mem/pt':>8}"
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        ratio = lambda k: f"{r[k]:.2f}" if r.get(k) is not None else "-"  # noqa: E731
        lines.append(f"{r['method']:<16}{r['train_step_s']:>10.4f}{r['infer_s']:>10.4f}{r['peak_mem_mb']:>10.1f}"
                     f"{r['samples_per_s']:>11.1f}{r['trainable_params']:>13,}{ratio('train_step_s_vs_pt'):>9}"
                     f"{ratio('infer_s_vs_pt'):>9}{ratio('peak_mem_mb_vs_pt'):>8}")
    for r in report["results"]:
        if "compile_s" in r or r.get("fraction_of_bf16_peak") is not None:
            peak = r.get("fraction_of_bf16_peak")
            lines.append(f"{r['method']}: {r['train_tflops_per_s']:.2f} TFLOP/s" +
                         (f" ({100 * peak:.1f}% of the bf16 peak)" if peak is not None else "") +
                         (f", compiled in {r['compile_s']:.1f} s: {r['compiled_graphs']} graph(s), "
                          f"{r['graph_breaks']} graph break(s)" if "compile_s" in r else ""))
    for p in report.get("paired", []):
        lines.append(f"paired {p['a']} / {p['b']} ({p['pairs']} pairs, median and quartiles): train step "
                     f"{p['step_ratio_median']:.3f} ({p['step_ratio_q1']:.3f}-{p['step_ratio_q3']:.3f}), generation "
                     f"{p['infer_ratio_median']:.3f} ({p['infer_ratio_q1']:.3f}-{p['infer_ratio_q3']:.3f})"
                     + (f"; counted FLOPs {p['flops_ratio']:.3f}" if p.get("flops_ratio") else ""))
    for r in report.get("scale", {}).get("results", []):
        lines.append(f"{r['method']}: train step {r['train_step_s']:.4f} s, peak memory {r['peak_mem_mb']:.1f} MB"
                     + (f" (cache hits {r['cache_hits']}, misses {r['cache_misses']})" if "cache_hits" in r else "")
                     + (f"; kept for backward {r['saved_for_backward_mb']:.1f} MB (dept: "
                        f"{r['dept_saved_for_backward_mb']:.1f} MB)" if "saved_for_backward_mb" in r else ""))
    for p in report.get("scale", {}).get("paired", []):
        lines.append(f"paired {p['a']} / {p['b']} ({p['step_ratio_pairs']} pairs, median and quartiles): train step "
                     f"{p['step_ratio_median']:.3f} ({p['step_ratio_q1']:.3f}-{p['step_ratio_q3']:.3f})")
    if "feature_cache" in report:
        fc = report["feature_cache"]
        paired = fc.get("speedup_paired")
        lines.append(f"cached features vs {fc['encoder']} every step: {fc['speedup']:.2f}x faster training steps"
                     + (f" (paired: {paired['median']:.2f}x)" if paired else ""))
    return "\n".join(lines)


def plot(report: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [r["method"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key, label in zip(axes, ("train_step_s", "infer_s", "peak_mem_mb"),
                              ("train step (s)", "generation (s)", "peak memory (MB)")):
        ax.bar(names, [r[key] for r in rows])
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(report["machine"], fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_report(report: dict, json_path: str | Path | None, png_path: str | Path | None) -> None:
    if json_path:
        write_text(json_path, json.dumps(report, indent=2) + "\n")
    if png_path:
        plot(report, png_path)
