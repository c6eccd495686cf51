"""Latency of generation: baseline, cache steering and activation steering (CAA) in three modes (issue 6).

    python benchmarks/bench_latency.py [--device cpu|cuda] [--model smollm2-135m-instruct] [--n-prompts 16]
        [--new-tokens 64] [--repeats 3] [--batch-sizes 1 16]
        [--out data/results/benchmarks/latency_<device>.json] [--figure data/results/benchmarks/latency_<device>.png]

The paper's benchmark (paper-reference section 4.2) on a small scale, without its measurement defects:

* Five methods, on the same prompts: the first ``--n-prompts`` ARC-Challenge test prompts (chat template, dataset
  order, left-padded batches of ``encode``): ``baseline`` (plain ``generate``); ``cache_steering`` (prompt +
  offset token "\\n", c_values 6; the timing includes its prefill and cache edit, as the paper's did);
  ``caa_paper`` (activation steering at every pass, ``use_cache=False``: the paper's "continuous" setting,
  multiplier 1.0); ``caa_cached`` (every new token steered, KV cache kept, multiplier 1.0); ``caa_one_shot``
  (only the prompt's last token in the prefill, multiplier 5.0). Both vectors come from one contrastive set;
  the CAA layer sits at the relative depth of the paper's layer 7 of Llama-3.2-1B's 16.
* Every method generates exactly ``--new-tokens`` tokens per row (``min_new_tokens = max_new_tokens``), so
  the tokens counted are rows x new tokens: real generated tokens only. The paper counted the padding of
  finished rows and of the partial last batch, and for cache steering the appended offset token as well.
* Each method is warmed up once (one call on the first batch); then ``--repeats`` interleaved repeats
  (A, B, C, D, E, A, B, ...) so that a busy machine slows all alike, and the median is reported. Every
  ``generate`` call is timed with ``time.perf_counter``, with ``torch.cuda.synchronize()`` before and after it
  on CUDA (the paper used ``time.time()``, no warm-up, no synchronisation). Batch 1 runs the same prompts one
  at a time and sums the times over the prompts of a repeat.
* Ratio = ms/token of a method / ms/token of the baseline, both from this run.
* Check that steering acted: after the timing, the rows whose generated tokens differ from the unsteered
  generation of the same input (the baseline; for cache steering a plain ``generate`` of prompt + offset token,
  untimed) are counted. Text, not speed, depends on the vectors and coefficients, but they are recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cachesteer_lite import (
    ActivationVector,
    SteeringVector,
    activation_steering,
    chat_prompt,
    encode,
    extract_activation_vector,
    extract_steering_vector,
    load_model,
)
from cachesteer_lite.caa import activation_fingerprint
from cachesteer_lite.contrastive import build_contrastive_set
from cachesteer_lite.data import load_items
from cachesteer_lite.models import DEFAULT_MODEL, default_device
from cachesteer_lite.provenance import run_record
from cachesteer_lite.steering import offset_token_id, steered_generate

REPO = Path(__file__).resolve().parents[1]

METHODS: tuple[str, ...] = ("baseline", "cache_steering", "caa_paper", "caa_cached", "caa_one_shot")
LABELS: dict[str, str] = {
    "baseline": "Baseline",
    "cache_steering": "Cache steering",
    "caa_paper": "CAA paper (no cache)",
    "caa_cached": "CAA cached",
    "caa_one_shot": "CAA one-shot",
}
OFFSET = "\n"
C_VALUES = 6.0  # the paper's latency run: cv=6, ck=0
MULTIPLIERS: dict[str, float] = {"caa_paper": 1.0, "caa_cached": 1.0, "caa_one_shot": 5.0}
CONTRASTIVE = dict(task="arc_challenge", n_pairs=16, n_demonstrations=2, selection="random", seed=0)

# The paper's latency table (paper-reference section 7): Llama-3.2-1B-Instruct, fp32, one H100, mean of 3 runs,
# ms/token as the paper counted tokens (padding and, for cache steering, the appended token included).
# Its "Activation, continuous" is caa_paper here; it did not measure caa_cached.
PAPER = {
    "model": "meta-llama/Llama-3.2-1B-Instruct",
    "device": "H100",
    "ms_per_token": {
        1: {"baseline": 10.067, "cache_steering": 10.062, "caa_paper": 15.789, "caa_one_shot": 10.219},
        16: {"baseline": 0.803, "cache_steering": 0.801, "caa_paper": 11.214, "caa_one_shot": 0.814},
    },
}


def paper_ratios() -> dict[int, dict[str, float]]:
    """The paper's ratios to its baseline (cache steering 1.00/1.00, continuous CAA 1.57/14.0, one-shot 1.02/1.01)."""
    return {bs: {m: v / row["baseline"] for m, v in row.items()} for bs, row in PAPER["ms_per_token"].items()}


def caa_layer_for(n_layers: int) -> int:
    """The layer at the relative depth of the paper's layer 7 of 16 (Llama-3.2-1B): 7 there, 13 of SmolLM2's 30."""
    return min(n_layers - 1, round(7 * n_layers / 16))


def build_vectors(model, tokenizer, **contrastive) -> tuple[SteeringVector, ActivationVector, dict]:
    """A cache-steering and an activation vector from one contrastive set, and the set's settings."""
    settings = CONTRASTIVE | contrastive
    task = settings.pop("task")
    contrastive_set = build_contrastive_set(tokenizer, task, **settings)
    pairs = contrastive_set.pairs
    steering = extract_steering_vector(model, tokenizer, pairs, progress=False)
    activation = extract_activation_vector(model, tokenizer, pairs, progress=False)
    return steering, activation, contrastive_set.settings


@dataclass(frozen=True)
class Batch:
    """One left-padded batch: the prompts alone, and the prompts with the offset token (for cache steering)."""

    ids: torch.Tensor
    mask: torch.Tensor
    offset_ids: torch.Tensor
    offset_mask: torch.Tensor


def make_batches(tokenizer, prompts: Sequence[str], batch_size: int, device: torch.device) -> list[Batch]:
    """Consecutive batches of ``batch_size`` prompts (dataset order, as the paper), on ``device``."""
    offset = offset_token_id(tokenizer, OFFSET)
    batches = []
    for start in range(0, len(prompts), batch_size):
        enc = encode(tokenizer, prompts[start : start + batch_size], device)
        ids, mask = enc.input_ids, enc.attention_mask
        offset_ids = torch.cat([ids, torch.full_like(ids[:, :1], offset)], 1)
        offset_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        batches.append(Batch(ids, mask, offset_ids, offset_mask))
    return batches


def method_functions(model, tokenizer, steering: SteeringVector, activation: ActivationVector, layer: int,
                     new_tokens: int) -> dict[str, Callable[[Batch], torch.Tensor]]:
    """Each method as a function of a batch that returns only the generated tokens, ``[rows, new_tokens]``."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)

    def baseline(b: Batch) -> torch.Tensor:
        return model.generate(input_ids=b.ids, attention_mask=b.mask, **kwargs)[:, b.ids.shape[1] :]

    def cache_steering(b: Batch) -> torch.Tensor:
        out = steered_generate(model, b.offset_ids, b.offset_mask, steering, c_values=C_VALUES, **kwargs)
        return out[:, b.offset_ids.shape[1] :]

    def caa(mode: str, multiplier: float) -> Callable[[Batch], torch.Tensor]:
        def run(b: Batch) -> torch.Tensor:
            with activation_steering(model, activation, layer, multiplier, mode):
                out = model.generate(input_ids=b.ids, attention_mask=b.mask, use_cache=mode != "paper", **kwargs)
            return out[:, b.ids.shape[1] :]

        return run

    return {
        "baseline": baseline,
        "cache_steering": cache_steering,
        "caa_paper": caa("paper", MULTIPLIERS["caa_paper"]),
        "caa_cached": caa("cached", MULTIPLIERS["caa_cached"]),
        "caa_one_shot": caa("one_shot", MULTIPLIERS["caa_one_shot"]),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_pass(fn: Callable[[Batch], torch.Tensor], batches: Sequence[Batch], device: torch.device,
               new_tokens: int) -> tuple[float, list[torch.Tensor]]:
    """Seconds of one pass over all batches (each call timed alone, synchronised) and the generated tokens."""
    seconds, outputs = 0.0, []
    for batch in batches:
        _sync(device)
        start = time.perf_counter()
        out = fn(batch)
        _sync(device)
        seconds += time.perf_counter() - start
        if out.shape[1] != new_tokens:
            raise RuntimeError(f"generated {out.shape[1]} tokens per row instead of {new_tokens}")
        outputs.append(out.cpu())
    return seconds, outputs


def rows_changed(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> int:
    """How many rows differ from the reference's in at least one generated token."""
    return sum(int((a != b).any(1).sum()) for a, b in zip(outputs, reference, strict=True))


def measure_batch_size(model, tokenizer, prompts: Sequence[str], functions: dict[str, Callable], batch_size: int,
                       new_tokens: int, repeats: int, device: torch.device) -> dict:
    """Every method at one batch size: one warm-up each, ``repeats`` interleaved passes, medians and ratios."""
    batches = make_batches(tokenizer, prompts, batch_size, device)
    for fn in functions.values():  # warm-up: one call per method
        timed_pass(fn, batches[:1], device, new_tokens)
    times: dict[str, list[float]] = {name: [] for name in functions}
    outputs: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(total=repeats * len(functions), desc=f"batch {batch_size}", unit="pass")
    for _ in range(repeats):
        for name, fn in functions.items():
            bar.set_postfix_str(name)
            seconds, outputs[name] = timed_pass(fn, batches, device, new_tokens)
            times[name].append(seconds)
            bar.update()
    bar.close()

    # untimed reference for cache steering: the same input (prompt + offset token), no edit
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    offset_reference = [model.generate(input_ids=b.offset_ids, attention_mask=b.offset_mask, **kwargs)
                        [:, b.offset_ids.shape[1] :].cpu() for b in batches]

    rows = sum(b.ids.shape[0] for b in batches)
    methods = {}
    for name in functions:
        seconds = statistics.median(times[name])
        tokens = sum(out.numel() for out in outputs[name])  # rows x new tokens: no padding, no offset token
        reference = offset_reference if name == "cache_steering" else outputs["baseline"]
        methods[name] = {
            "seconds": seconds,
            "seconds_per_repeat": times[name],
            "tokens": tokens,
            "ms_per_token": 1000 * seconds / tokens,
            "tokens_per_s": tokens / seconds,
            "rows_changed_by_steering": None if name == "baseline" else rows_changed(outputs[name], reference),
            "first_row_text": tokenizer.decode(outputs[name][0][0], skip_special_tokens=True),
        }
    for entry in methods.values():
        entry["ratio_to_baseline"] = entry["ms_per_token"] / methods["baseline"]["ms_per_token"]
    return {
        "batch_size": batch_size,
        "n_prompts": rows,
        "n_batches": len(batches),
        "new_tokens_per_row": new_tokens,
        "prompt_padding_tokens": sum(int((b.mask == 0).sum()) for b in batches),
        "methods": methods,
    }


def measure(model, tokenizer, steering: SteeringVector, activation: ActivationVector, *, n_prompts: int = 16,
            new_tokens: int = 64, repeats: int = 3, batch_sizes: Sequence[int] = (1, 16),
            layer: int | None = None) -> dict:
    """Latency of the five methods at each batch size, on the first ``n_prompts`` ARC-Challenge test prompts."""
    if repeats < 1 or new_tokens < 1 or n_prompts < 1:
        raise ValueError("repeats, new_tokens and n_prompts must be at least 1")
    n_layers = activation_fingerprint(model)["n_layers"]
    layer = caa_layer_for(n_layers) if layer is None else layer
    items = load_items("arc_challenge", "test", limit=n_prompts)
    if len(items) < n_prompts:
        raise ValueError(f"ARC-Challenge test has only {len(items)} items, {n_prompts} requested")
    prompts = [chat_prompt(tokenizer, item.question) for item in items]
    functions = method_functions(model, tokenizer, steering, activation, layer, new_tokens)
    prompt_tokens = encode(tokenizer, prompts).attention_mask.sum(-1).tolist()
    with torch.inference_mode():
        results = [measure_batch_size(model, tokenizer, prompts, functions, bs, new_tokens, repeats, model.device)
                   for bs in batch_sizes]
    return {
        "settings": {
            "n_layers": n_layers,
            "caa_layer": layer,
            "caa_layer_rule": "round(7 / 16 * n_layers): the paper's layer 7 of Llama-3.2-1B's 16, same relative depth",
            "cache_steering": {"c_keys": 0.0, "c_values": C_VALUES, "layers": "all but 0 (library default)",
                               "offset": OFFSET},
            "caa_multipliers": MULTIPLIERS,
            "prompt_tokens_mean": statistics.mean(prompt_tokens),
            "prompt_tokens_max": max(prompt_tokens),
        },
        "results": results,
        "ratios": {str(r["batch_size"]): {m: r["methods"][m]["ratio_to_baseline"] for m in METHODS}
                   for r in results},
    }


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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    draw_figure(report, args.figure)
    print_table(report)
    print(f"written to {args.out} and {args.figure} ({report['wall_time_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
