"""Latency of generation: baseline, cache steering and activation steering (CAA) in three modes (issue 6).

    python benchmarks/bench_latency.py [--device cpu|cuda] [--model smollm2-135m-instruct] [--n-prompts 16]
        [--new-tokens 64] [--repeats 3] [--batch-sizes 1 16]
        [--out data/results/benchmarks/latency_<device>.json] [--figure data/results/benchmarks/latency_<device>.png]

The measurement is :mod:`cachesteer_lite.runs.timing` (the same inputs for five methods, interleaved repeats,
real tokens only, ratios from one run; its docstring lists how it differs from the paper's measurement). This
script extracts both vectors from one contrastive set, runs it, stores the report with its provenance and draws
the figure.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from cachesteer_lite import (
    ActivationVector,
    SteeringVector,
    build_contrastive_set,
    extract_activation_vector,
    extract_steering_vector,
    load_model,
)
from cachesteer_lite.core.models import DEFAULT_MODEL, default_device
from cachesteer_lite.runs.provenance import run_record
from cachesteer_lite.runs.records import write_json
from cachesteer_lite.runs.timing import LABELS, METHODS, PAPER, measure, paper_ratios

REPO = Path(__file__).resolve().parents[1]

CONTRASTIVE = dict(task="arc_challenge", n_pairs=16, n_demonstrations=2, selection="random", seed=0)


def build_vectors(model, tokenizer, **contrastive) -> tuple[SteeringVector, ActivationVector, dict]:
    """A cache-steering and an activation vector from one contrastive set, and the set's settings."""
    settings = CONTRASTIVE | contrastive
    task = settings.pop("task")
    contrastive_set = build_contrastive_set(tokenizer, task, **settings)
    pairs = contrastive_set.pairs
    steering = extract_steering_vector(model, tokenizer, pairs, progress=False)
    activation = extract_activation_vector(model, tokenizer, pairs, progress=False)
    return steering, activation, contrastive_set.settings


def print_table(report: dict) -> None:
    """Per batch size and method: ms/token, tokens/s, the ratio to the baseline and the paper's ratio."""
    paper = paper_ratios()
    print(f"\n{'batch':>5}  {'method':<22}{'ms/token':>10}{'tokens/s':>10}{'ratio':>8}{'paper':>8}"
          f"{'tokens':>8}{'changed':>9}")
    for result in report["results"]:
        bs = result["batch_size"]
        for name in METHODS:
            m = result["methods"][name]
            ref = paper.get(bs, {}).get(name)
            changed = "-" if m["rows_changed_by_steering"] is None else \
                f"{m['rows_changed_by_steering']}/{result['n_prompts']}"
            print(f"{bs:>5}  {LABELS[name]:<22}{m['ms_per_token']:>10.2f}{m['tokens_per_s']:>10.1f}"
                  f"{m['ratio_to_baseline']:>8.2f}{'' if ref is None else f'{ref:.2f}':>8}{m['tokens']:>8}"
                  f"{changed:>9}")
    print("ratio: ms/token of the method / ms/token of the baseline, this run; paper: Llama-3.2-1B on an H100;\n"
          "changed: rows whose generated tokens differ from the unsteered generation of the same input")


def draw_figure(report: dict, path: Path) -> None:
    """ms/token per method at each batch size (log scale), the ratio on each bar, the paper's ratios as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    colours = dict(zip(METHODS, sns.color_palette("deep", len(METHODS)), strict=True))
    paper = paper_ratios()
    results = report["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.6), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        bs = result["batch_size"]
        methods = result["methods"]
        values = [methods[m]["ms_per_token"] for m in METHODS]
        bars = ax.bar(range(len(METHODS)), values, color=[colours[m] for m in METHODS])
        for bar, name in zip(bars, METHODS, strict=True):
            ax.annotate(f"{methods[name]['ratio_to_baseline']:.2f}x", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                        fontsize=9)
        baseline = methods["baseline"]["ms_per_token"]
        marked = [(i, paper[bs][m] * baseline) for i, m in enumerate(METHODS) if m in paper.get(bs, {})]
        if marked and bs in paper:
            ax.scatter([i for i, _ in marked], [v for _, v in marked], marker="D", s=42, color="black", zorder=3,
                       label="paper's ratio x this baseline\n(Llama-3.2-1B, H100)")
            ax.legend(loc="upper left", fontsize=8)
        ax.set_yscale("log")
        top = max(values + [v for _, v in marked])
        ax.set_ylim(min(values) / 2, top * 3)
        ax.set_xticks(range(len(METHODS)), [LABELS[m].replace(" (", "\n(") for m in METHODS], rotation=30,
                      ha="right", fontsize=9)
        calls = result["n_batches"]
        ax.set_title(f"batch {bs}: {result['n_prompts']} prompts in {calls} call{'s' * (calls > 1)}, "
                     f"{result['new_tokens_per_row']} tokens each", fontsize=11)
        ax.set_ylabel("ms per generated token (log)")
    config = report["config"]
    fig.suptitle(f"Generation latency, {config['model']} on {config['device']} "
                 f"(median of {config['repeats']} interleaved repeat{'s' * (config['repeats'] > 1)})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def portable(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, so that a stored report names no machine."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=default_device())
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, help="default: data/results/benchmarks/latency_<device>.json")
    parser.add_argument("--figure", type=Path, help="default: data/results/benchmarks/latency_<device>.png")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    results_dir = REPO / "data" / "results" / "benchmarks"
    args.out = args.out or results_dir / f"latency_{args.device}.json"
    args.figure = args.figure or results_dir / f"latency_{args.device}.png"
    started = time.perf_counter()

    print(f"loading {args.model} on {args.device} ...", flush=True)
    model, tokenizer = load_model(args.model, device=args.device)
    print("extracting the cache-steering and activation vectors ...", flush=True)
    extraction_started = time.perf_counter()
    steering, activation, contrastive = build_vectors(model, tokenizer)
    extraction_s = time.perf_counter() - extraction_started
    print(f"measuring batch sizes {args.batch_sizes}: {args.n_prompts} prompts x {args.new_tokens} tokens, "
          f"{args.repeats} repeat(s) ...", flush=True)
    measured = measure(model, tokenizer, steering, activation, n_prompts=args.n_prompts, new_tokens=args.new_tokens,
                       repeats=args.repeats, batch_sizes=args.batch_sizes)

    config = vars(args) | {"out": portable(args.out), "figure": portable(args.figure), "dtype": str(model.dtype),
                           "contrastive_set": contrastive} | measured.pop("settings")
    report = {"config": config, **measured,
              "paper": {**PAPER, "ratios": {str(bs): r for bs, r in paper_ratios().items()}},
              "run": run_record(model.device), "vector_extraction_s": extraction_s,
              "wall_time_s": time.perf_counter() - started}
    if not all(math.isfinite(r) for row in report["ratios"].values() for r in row.values()):
        raise RuntimeError("a ratio is not finite")
    write_json(args.out, report)
    draw_figure(report, args.figure)
    print_table(report)
    print(f"written to {args.out} and {args.figure} ({report['wall_time_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
