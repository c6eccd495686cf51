"""The claims beyond the results tables: stability and latency against activation steering (notebook 6), style
transfer (notebook 7) and Liu et al.'s cache augmentation (notebook 8).
"""

from __future__ import annotations

import json
from typing import Any

from ..runs.results import collect_grids, stored_results_dir
from .common import CHOICE_TASKS, STORED_MODEL, Finding, paired, stored, words

LATENCY_BENCHMARK = "benchmarks/latency_cpu.json"
STYLE_SUMMARY = f"{STORED_MODEL}/style_transfer/summary.json"
AUGMENTATION_SCORES = f"{STORED_MODEL}/cache_augmentation/perplexity.json"


def caa_layer(task: str) -> int:
    """The layer of the stored CAA run on ``task``: the one its held-out grid chose."""
    return stored(task, "caa").result["config"]["options"]["layer"]


def stability_row() -> Finding:
    """Cache steering against CAA at the strongest setting of each held-out grid (CAA's at the layer the grid
    chose): how many answers loop; and, where CAA's grid has several layers, how its strongest setting fares at each."""
    grid = collect_grids(model=STORED_MODEL)
    chosen = {task: caa_layer(task) for task in {point["task"] for point in grid if point["method"] == "caa"}}
    strongest: dict[tuple[str, str], dict[str, Any]] = {}  # (task, method) -> its grid's largest coefficient
    for point in grid:
        if point["method"] == "caa" and point["layer"] != chosen[point["task"]]:
            continue
        key = (point["task"], point["method"])
        if key not in strongest or point["coefficient"] > strongest[key]["coefficient"]:
            strongest[key] = point
    by_method: dict[str, list[float]] = {}
    for (_, method), point in strongest.items():
        by_method.setdefault(method, []).append(100 * point["degenerate"])
    loops = {method: sum(values) / len(values) for method, values in by_method.items()}
    ours = (f"answers that loop at the strongest setting of each held-out grid, mean over tasks: CAA "
            f"{loops.get('caa', float('nan')):.0f}% (at the layer each grid chose), cache steering "
            f"{loops.get('cache_steering', float('nan')):.0f}%")
    searched = []  # tasks whose CAA grid covers several layers
    for task in CHOICE_TASKS:
        caa = [point for point in grid if point["task"] == task and point["method"] == "caa"]
        layers = sorted({point["layer"] for point in caa})
        if len(layers) > 1:
            searched.append(task)
            top = max(point["coefficient"] for point in caa)
            at_top = {point["layer"]: point for point in caa if point["coefficient"] == top}
            ours += (f"; {task}, CAA at multiplier {top:g}: " + ", ".join(
                f"layer {layer} {100 * at_top[layer]['degenerate']:.0f}% loop, {words(at_top[layer]['mean_words'])} "
                "an answer" for layer in layers))
    verdict = ("**Holds in kind**: at the end of its grid CAA loops more; whether that is stability or where each "
               "grid ends, the reproducibility page weighs" if loops.get("caa", 0) > loops.get("cache_steering", 0)
               else "**Not confirmed**: cache steering loops as often as CAA at its strongest")
    return Finding("Cache steering is more stable than activation steering (CAA)",
                   "accuracy varies less over `c` than over CAA's multiplier", ours, verdict,
                   "Grids of at least 100 held-out questions, " + ("" if set(searched) == set(CHOICE_TASKS) else
                   f"CAA over several layers on every task (so far {', '.join(searched) or 'none'}), ") + "and the two "
                   "scales matched by effect.")


def latency_row() -> Finding:
    """The time per token of cache steering and the paper's CAA mode, relative to the baseline."""
    report = json.loads((stored_results_dir() / LATENCY_BENCHMARK).read_text(encoding="utf-8"))
    ours, paper = report["ratios"], report["paper"]["ratios"]

    def ratios(table: dict[str, dict[str, float]]) -> str:
        return (f"cache steering x{table['1']['cache_steering']:.2f} (batch 1) and x{table['16']['cache_steering']:.2f}"
                f" (batch 16); CAA (no cache) x{table['1']['caa_paper']:.2f} and x{table['16']['caa_paper']:.2f}")

    free = max(ours["1"]["cache_steering"], ours["16"]["cache_steering"]) < 1.05
    return Finding("Cache steering costs nothing per token; CAA slows decoding", f"H100: {ratios(paper)}",
                   f"CPU: {ratios(ours)}; CAA with a cache x{ours['1']['caa_cached']:.2f}",
                   ("**Holds**: CAA's cost comes from dropping the cache" if free else
                    "**Partly holds**: CAA slows decoding, but cache steering costs more than 5% per token here"),
                   "Settled on a CPU; a GPU timing would add the paper's hardware (`benchmarks/bench_latency.py`).")


def style_row() -> Finding:
    """Style adherence of steered answers at the coefficient nearest the paper's ``c_values`` = 6."""
    summary = json.loads((stored_results_dir() / STYLE_SUMMARY).read_text(encoding="utf-8"))
    steered = [row for row in summary["rows"] if row["steered_style"] == row["scored_style"]]
    c_show = min({row["c_values"] for row in steered}, key=lambda c: abs(c - 6))
    at_c = [row for row in steered if row["c_values"] == c_show]
    counts = ", ".join(f"{row['steered_style']} {row['rules_count']}/{row['n']}" for row in at_c)
    best = max(row["rules_share"] for row in at_c)
    verdict = ("**Holds**" if best >= 0.85 else "**Not reproduced** at this scale") + \
        f": at most {100 * best:.0f}% of answers in the intended style (the paper: 85-100%)"
    return Finding("Steering transfers a reasoning style", "17-20 of 20 answers in the target style, c = 6",
                   f"by the rules, c = {c_show:g}: {counts}", verdict,
                   "A larger model (the paper's 360M) and the paper's 768 tokens; both measures are in "
                   "notebook 7.")


def augmentation_row() -> Finding:
    """Liu et al.'s cache augmentation: held-out loss against the plain model and the pause-token control."""
    scores = json.loads((stored_results_dir() / AUGMENTATION_SCORES).read_text(encoding="utf-8"))
    rows = [row for row in scores["rows"] if row["n_latents"]]
    largest = max(row["n_latents"] for row in rows)
    copro = next(row for row in rows if row["kind"] == "coprocessor" and row["n_latents"] == largest)
    pause = next(row for row in rows if row["kind"] != "coprocessor" and row["n_latents"] == largest)
    delta, (low, high) = copro["difference_vs_plain"]["mean"], copro["difference_vs_plain"]["ci95"]
    gsm8k = paired("gsm8k", "cache_augmentation", "baseline")
    ours = (f"N_L = {largest}, 200 CPU steps: held-out loss {delta:+.3f} nats vs the plain model [{low:+.3f}, "
            f"{high:+.3f}] (pause tokens {pause['difference_vs_plain']['mean']:+.3f}); GSM8K "
            f"{gsm8k['difference']:+.1f} points ({gsm8k['only_first']} vs {gsm8k['only_second']} items)")
    verdict = ("**Holds** (lower loss)" if high < 0 else "**Not reproduced** at toy scale: the loss is "
               + ("higher" if low > 0 else "not lower") + " than the plain model's")
    return Finding("A trained coprocessor's latents lower perplexity and help reasoning (Liu et al.)",
                   "Gemma-2 2B: lower perplexity at every ahead position; GSM8K +10 points with 64 latents", ours,
                   verdict, "Pretraining-scale training of the coprocessor on a GPU, far beyond this book's budget.")
