"""The book's verdicts on the paper's claims, computed from the stored runs: the findings box that opens the book
(``book/intro.md``) and closes notebook 5 (:func:`findings_markdown`).

Each claim of Belitsky et al. (longer reasoning, accuracy greedy and sampled, CoT plus steering, its offset-token
control, robustness to its settings, stability against CAA, latency, style transfer) and of Liu et al. (cache
augmentation) gets the paper's number, ours, a verdict and what it would take to settle it. The verdicts follow
fixed rules over the numbers (a paired difference counts only at p < 0.05, a pooled sampled one only when its 95%
interval excludes zero), so they change when the stored runs do; the power calculation says how many questions a
paired test would need to see the paper's SmolLM2 gains, at our runs' rate of changed answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from .runs import budget
from .runs.ablation import ablation_rows, stored_ablation_dir
from .runs.answer_source import answer_sources
from .runs.controls import OffsetEffect, offset_effect
from .runs.paper import load_paper_results, paper_entry
from .runs.results import StoredRun, collect_grids, degenerate, stored_results_dir, stored_run, stored_run_folder
from .runs.sampling import SAMPLED_TASKS, mean_sd, paper_sampled, sampling_summary
from .runs.statistics import paired_comparison, paired_sample_size

STORED_MODEL = "smollm2-135m-instruct"  # the model of the book's stored runs
PAPER_MODEL = "SmolLM2-360M-Instruct"   # the paper's nearest model
CHOICE_TASKS = ("arc_challenge", "csqa", "piqa")  # where the paper has SmolLM2 numbers
SIGNIFICANT = 0.05
CONTROL_TOLERANCE = 0.05  # the control "leaves answers unchanged" if the token alone changes at most 5% of them
LATENCY_BENCHMARK = "benchmarks/latency_cpu.json"
STYLE_SUMMARY = f"{STORED_MODEL}/style_transfer/summary.json"
AUGMENTATION_SCORES = f"{STORED_MODEL}/cache_augmentation/perplexity.json"


class Finding(NamedTuple):
    """One row of the findings box."""

    claim: str
    paper: str
    ours: str
    verdict: str
    to_settle: str


def stored(task: str, method: str) -> StoredRun:
    """A stored 300-question run of the embedded model (it must exist: the book ships them)."""
    run = stored_run(task, method, STORED_MODEL)
    if run is None:
        raise FileNotFoundError(f"no stored {method} run on {task} in {stored_run_folder(task, method, STORED_MODEL)}")
    return run


def loop_share(task: str, method: str) -> float:
    """The share (%) of a stored run's answers that loop (:func:`runs.results.degenerate`)."""
    return 100 * degenerate(stored(task, method).result, stored_run_folder(task, method, STORED_MODEL))


def paper_accuracy(task: str, method: str) -> float | None:
    """The paper's SmolLM2-360M greedy accuracy (%) for ``method`` on ``task``, None where it has none."""
    entry = paper_entry(task, method, PAPER_MODEL)
    return None if entry is None else entry.get("accuracy")


def paper_gain(task: str, method: str, counterpart: str) -> float | None:
    """The paper's SmolLM2-360M difference in points, ``method`` minus ``counterpart``, None where it lacks one."""
    ours, theirs = paper_accuracy(task, method), paper_accuracy(task, counterpart)
    return None if ours is None or theirs is None else ours - theirs


def paired(task: str, method: str, counterpart: str) -> dict[str, Any]:
    """``method`` against ``counterpart`` on the same stored items, with the difference in points."""
    comparison = paired_comparison(stored(task, method).records, stored(task, counterpart).records)
    comparison["difference"] = 100 * (comparison["only_first"] - comparison["only_second"]) / comparison["n"]
    return comparison


def accuracy_verdict(comparisons: dict[str, dict[str, Any]]) -> str:
    """'confirmed', 'contradicted' or 'not confirmed', by the paired tests at p < 0.05 on each task."""
    better = [task for task, c in comparisons.items() if c["p_value"] < SIGNIFICANT and c["difference"] > 0]
    worse = [task for task, c in comparisons.items() if c["p_value"] < SIGNIFICANT and c["difference"] < 0]
    if worse:
        return f"**Contradicted** on {', '.join(worse)}" + (f", confirmed on {', '.join(better)}" if better else "")
    if better:
        return f"**Confirmed** on {', '.join(better)}"
    smallest = min(c["p_value"] for c in comparisons.values())
    return f"**Not confirmed**: no task differs beyond chance (smallest p = {smallest:.2f})"


def questions_needed(comparisons: dict[str, dict[str, Any]], method: str, counterpart: str) -> str:
    """For each task: the questions a paired test needs to see the paper's gain at 80% power, given our share
    of items that only one of the two methods got right, against the size of the whole split."""
    parts = []
    for task, comparison in comparisons.items():
        points = paper_gain(task, method, counterpart)
        if points is None:
            continue
        gain = points / 100
        discordant = (comparison["only_first"] + comparison["only_second"]) / comparison["n"]
        split = load_paper_results()["n"][task]
        if gain == 0 or abs(gain) > discordant:
            parts.append(f"{task}: the paper's difference is {100 * gain:+.2f} points, not testable")
            continue
        needed = paired_sample_size(discordant, gain)
        size = (f"{needed:,} questions ({needed / split:.1f}x the split of {split:,})" if needed <= 10 * split
                else f"over 10 times the split of {split:,}: out of reach")
        parts.append(f"{task} {100 * gain:+.2f} points: {size}")
    return "; ".join(parts)


def gpu_estimate(model: str = PAPER_MODEL, gpu: str = "T4 (16 GB)") -> str:
    """What rerunning the paper's table for ``model`` takes on Colab's free GPU, from :mod:`runs.budget`."""
    architecture, card = budget.ARCHITECTURES[model], budget.GPUS[gpu]
    batch = budget.largest_batch(architecture, card)
    return (f"about {budget.table_hours(architecture, card, batch):.1f} h for its table on a {gpu.split()[0]} "
            f"(estimated, the Colab page; `scripts/reproduce_table.sh --model HuggingFaceTB/{model} --preset paper "
            "all`).")


def comparison_row(claim: str, method: str, counterpart: str) -> Finding:
    """A claim that ``method`` is more accurate than ``counterpart``: the paper's gains, our paired tests."""
    comparisons = {task: paired(task, method, counterpart) for task in CHOICE_TASKS}
    gains = {task: paper_gain(task, method, counterpart) for task in CHOICE_TASKS}
    paper = ", ".join(f"{task} {gain:+.2f}" for task, gain in gains.items() if gain is not None)
    ours = ", ".join(f"{task} {c['difference']:+.1f} ({c['only_first']} vs {c['only_second']} items, "
                     f"p = {c['p_value']:.2f})" for task, c in comparisons.items())
    sources = {task: answer_sources(stored(task, method).records) for task in CHOICE_TASKS}
    stated = ", ".join(f"{task} {100 * s.stated / s.n:.0f}% ({100 * (s.stated - s.opening_only) / s.n:.0f}%)"
                       for task, s in sources.items())
    ours += (f"; {method} responses that state an option themselves (in brackets: by an answer phrase, not a bare "
             f"opening \"A:\"): {stated}; the others are scored by the unsteered extraction step (the "
             "reproducibility page's \"who chose the answer\")")
    to_settle = (f"At 80% power and our rate of changed answers: {questions_needed(comparisons, method, counterpart)}. "
                 "Where that exceeds the split, no run of the paper's size could show the gain at our rate; the next "
                 "step is the paper's own model on whole splits with its 768 tokens (its own rate of changed answers "
                 f"decides), {gpu_estimate()}")
    return Finding(claim, f"points, SmolLM2-360M: {paper}", f"points, 300 questions: {ours}",
                   accuracy_verdict(comparisons), to_settle)


def control_effect(task: str) -> OffsetEffect:
    """The stored offset control on ``task`` against the baseline (both must exist: the book ships them)."""
    effect = offset_effect(task, STORED_MODEL)
    if effect is None:
        raise FileNotFoundError(f"no stored offset_control and baseline runs on {task} in {stored_results_dir()}")
    return effect


def control_row() -> Finding:
    """The paper's control: the offset token alone, no edit, leaves the answers unchanged."""
    effects = [control_effect(task) for task in CHOICE_TASKS]
    ours = "; ".join(f"{e.task}: {100 * e.answers_changed / e.n:.0f}% of the scored answers and "
                     f"{100 * e.responses_changed / e.n:.0f}% of the responses changed, accuracy "
                     f"{100 * e.baseline_correct / e.n:.1f}% -> {100 * e.control_correct / e.n:.1f}% "
                     f"(p = {e.p_value:.2f})" for e in effects)
    shares = [100 * e.answers_changed / e.n for e in effects]
    changed = [e.task for e in effects if e.answers_changed / e.n > CONTROL_TOLERANCE]
    moved = [e.task for e in effects if e.p_value < SIGNIFICANT]
    if not changed:
        verdict = f"**Holds**: the token alone changes at most {100 * CONTROL_TOLERANCE:.0f}% of the scored answers"
    else:
        verdict = (f"**Not reproduced**: the token alone changes {min(shares):.0f}-{max(shares):.0f}% of the scored "
                   f"answers ({len(changed)} of {len(effects)} tasks above {100 * CONTROL_TOLERANCE:.0f}%); "
                   + (f"accuracy moves beyond chance on {', '.join(moved)}" if moved else
                      "accuracy does not move beyond chance, so the token reshuffles which questions are right"))
    return Finding("The offset token alone leaves the answers unchanged (the paper's control)",
                   "one prompt, the same answer with the token and without it (the paper's notebook)",
                   f"300 questions per task: {ours}", verdict,
                   "The control on the paper's own models; meanwhile a steering run's own effect is its difference "
                   "from this control as well as from the baseline (the reproducibility page)")


def ablation_row() -> Finding:
    """The paper's ablation: accuracy barely moves when one setting of cache steering is varied at a time. Judged by
    the paired test of each point against the base point, and read beside what the setting does to the answers."""
    rows = ablation_rows(stored_ablation_dir(STORED_MODEL))
    if not rows:
        raise FileNotFoundError(f"no stored ablation in {stored_ablation_dir(STORED_MODEL)}")
    base = next(row for row in rows if row["varied"] is None)
    varied = [row for row in rows if row["varied"] is not None]
    moved = [f"{row['varied']} {row[row['varied']]:g}" for row in varied if row["p_value"] < SIGNIFICANT]
    accuracy = [100 * row["accuracy"] for row in rows]
    ranges = {setting: [row for row in rows if row["varied"] in (None, setting)]
              for setting in dict.fromkeys(row["varied"] for row in varied)}
    widest = max(ranges, key=lambda setting: max(row["mean_words"] for row in ranges[setting])
                 - min(row["mean_words"] for row in ranges[setting]))
    span = sorted(ranges[widest], key=lambda row: row[widest])
    ours = (f"{len(rows)} points on the same {base['n']} held-out ARC questions: accuracy "
            f"{min(accuracy):.0f}-{max(accuracy):.0f}% (base {100 * base['accuracy']:.0f}%), "
            f"{len(moved)} of {len(varied)} points differ from the base at p < {SIGNIFICANT}; {widest} from "
            f"{span[0][widest]:g} to {span[-1][widest]:g} takes answers from {words(span[0]['mean_words'])} to "
            f"{words(span[-1]['mean_words'])}, {100 * span[0]['degenerate']:.0f}% to "
            f"{100 * span[-1]['degenerate']:.0f}% loop, the responses that state an answer from "
            f"{100 * span[0]['stated']:.0f}% to {100 * span[-1]['stated']:.0f}%, and accuracy by the response alone "
            f"from {100 * span[0]['response_accuracy']:.0f}% to {100 * span[-1]['response_accuracy']:.0f}% (by an "
            f"answer phrase {100 * span[0]['phrase_accuracy']:.0f}% to {100 * span[-1]['phrase_accuracy']:.0f}%)")
    if moved:
        verdict = f"**Not reproduced**: accuracy moves beyond chance at {', '.join(moved)}"
    else:
        verdict = ("**Holds for accuracy**, which no setting moves beyond chance; not for the answers, which "
                   f"{widest} changes from end to end")
    reference = load_paper_results()["ablation"]
    paper = [score for grid in reference["accuracy"].values() for score in grid.values()]
    return Finding("Cache steering is robust to its settings (the paper's ablation)",
                   f"{reference['model']} on ARC-Challenge's test set: {len(paper)} points, accuracy "
                   f"{min(paper):.1f}-{max(paper):.1f}%", ours, verdict,
                   f"More questions per point (a 95% interval of {100 * (base['ci95'][1] - base['ci95'][0]) / 2:.0f} "
                   f"points either side at {base['n']}) and the paper's grids on its own model, on held-out "
                   "questions")


def sampling_row() -> Finding:
    """The paper's sampling table: cache steering ahead of the baseline on average over five sampled seeds. Judged by
    the bias pooled over the seeds, whose 95% bootstrap interval over the questions must exclude zero."""
    found = {task: sampling_summary(task, STORED_MODEL) for task in SAMPLED_TASKS}
    summaries = {task: summary for task, summary in found.items() if summary is not None}
    if not summaries:
        raise FileNotFoundError(f"no stored sampling runs of both methods on {', '.join(SAMPLED_TASKS)}")
    unsampled = [task for task in SAMPLED_TASKS if task not in summaries]
    paper: list[str] = []
    ours: list[str] = []
    for task, summary in summaries.items():
        base, steered = (paper_sampled(task, method, PAPER_MODEL) for method in ("baseline", "cache_steering"))
        if base and steered:
            paper.append(f"{task} {steered[0] - base[0]:+.2f} ({base[0]:.2f} ± {base[1]:.2f} -> "
                         f"{steered[0]:.2f} ± {steered[1]:.2f})")
        (base_mean, base_sd), (steered_mean, steered_sd) = mean_sd(summary.baseline), mean_sd(summary.steered)
        low, high = summary.pooled["ci95"]
        ours.append(f"{task} {summary.pooled['mean']:+.1f} [{low:+.1f}, {high:+.1f}] ({base_mean:.1f} ± "
                    f"{base_sd or 0:.1f} -> {steered_mean:.1f} ± {steered_sd or 0:.1f}; steering ahead at "
                    f"{sum(bias > 0 for bias in summary.bias)} of {len(summary.bias)} seeds)")
    intervals = {task: summary.pooled["ci95"] for task, summary in summaries.items()}
    better = [task for task, (low, _) in intervals.items() if low > 0]
    worse = [task for task, (_, high) in intervals.items() if high < 0]
    widths = [high - low for low, high in intervals.values()]
    n, seeds = summary.pairs[0].n, len(summary.pairs)  # the same for every task (one script made them)
    shrink = (n / 300) ** 0.5  # the intervals' width at the greedy table's 300 questions, relative to ours
    if worse:
        verdict = f"**Contradicted** on {', '.join(worse)}" + (f", confirmed on {', '.join(better)}" if better else "")
    elif better:
        verdict = f"**Confirmed** on {', '.join(better)}"
    else:
        verdict = f"**Not confirmed**: the pooled interval holds zero on {', '.join(summaries)}"
    return Finding("Sampled, cache steering is ahead of the baseline on average (the paper's sampling table)",
                   f"points, SmolLM2-360M, mean ± sd over 5 seeds: {'; '.join(paper)}",
                   f"points pooled over {seeds} seeds, [95% bootstrap interval over {n} questions]: {'; '.join(ours)}",
                   verdict, (f"The sampled runs of {', '.join(unsampled)}; the" if unsampled else "The")
                   + f" paper's model on the whole splits: at {n} questions our pooled intervals are "
                   f"{min(widths):.0f}-{max(widths):.0f} points wide, and the 300 questions of the greedy table would "
                   f"narrow them only to about {min(widths) * shrink:.0f}-{max(widths) * shrink:.0f} (an interval "
                   "narrows as one over the square root of the questions)")


def length_row() -> Finding:
    """Longer answers under cache steering, and how many of them loop."""
    parts, longer, looping = [], 0, 0
    for task in CHOICE_TASKS + ("gsm8k",):
        steered, baseline = stored(task, "cache_steering").result, stored(task, "baseline").result
        ratio = steered["mean_words"] / baseline["mean_words"]
        longer += ratio >= 1.5
        looping += ratio >= 1.5 and loop_share(task, "cache_steering") >= 2 * loop_share(task, "baseline")
        parts.append(f"{task} x{ratio:.1f} ({loop_share(task, 'cache_steering'):.0f}% loop, unsteered "
                     f"{loop_share(task, 'baseline'):.0f}%)")
    paper = ", ".join(f"{task} x{entry['mean_words'] / base['mean_words']:.0f}" for task in CHOICE_TASKS
                      if (entry := paper_entry(task, "cache_steering", PAPER_MODEL)) and entry.get("mean_words")
                      and (base := paper_entry(task, "baseline", PAPER_MODEL)) and base.get("mean_words"))
    verdict = (f"**Holds in length** (1.5 times or more on {longer} of 4 tasks), but on {looping} of them at least "
               "twice as many answers loop" if longer >= 2
               else f"**Not confirmed**: answers 1.5 times longer on {longer} of 4 tasks")
    return Finding("Cache steering makes answers longer (more reasoning)", f"words, steered / unsteered: {paper}",
                   f"words, steered / unsteered: {'; '.join(parts)}", verdict,
                   "Answers cut at 256 tokens here: the paper's 768 tokens, and a measure of reasoning beyond length.")


def caa_layer(task: str) -> int:
    """The layer of the stored CAA run on ``task``: the one its held-out grid chose."""
    return stored(task, "caa").result["config"]["options"]["layer"]


def words(mean: float) -> str:
    """'1 word', '32 words': a mean length in words, rounded."""
    return f"{mean:.0f} word" + ("" if round(mean) == 1 else "s")


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


def evaluation_findings() -> list[Finding]:
    """The claims of the paper's results table and its ablation (notebook 5): longer answers, accuracy, CoT plus
    steering, its control (the offset token alone), and robustness to the settings."""
    return [length_row(),
            comparison_row("Cache steering raises accuracy", "cache_steering", "baseline"),
            comparison_row("Steering adds to a CoT prompt", "cache_steering_cot", "cot"),
            sampling_row(), control_row(), ablation_row()]


def findings() -> list[Finding]:
    """Every finding, in the order of the paper's claims."""
    return evaluation_findings() + [stability_row(), latency_row(), style_row(), augmentation_row()]


def findings_markdown(rows: Sequence[Finding] | None = None) -> str:
    """The findings as Markdown (the block ``findings`` of the landing page): one item per claim, the verdict first,
    then our numbers, the paper's and what would settle it; a list, not a five-column table, reads on a phone."""
    items = []
    for row in findings() if rows is None else rows:
        ours, paper, to_settle = (text.rstrip(".") for text in (row.ours, row.paper, row.to_settle))
        items.append(f"- **{row.claim}.** *Verdict:* {row.verdict}.\n  - *Ours:* {ours}.\n  - *The paper:* {paper}.\n"
                     f"  - *To settle:* {to_settle}.")
    return "\n".join(items)
