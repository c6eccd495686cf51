"""The claims of the paper's results tables and its ablation (notebook 5 ends with them): longer answers, accuracy
greedy and sampled, CoT plus steering, the offset-token control, and robustness to the settings.
"""

from __future__ import annotations

from ..runs.ablation import ablation_rows, stored_ablation_dir
from ..runs.answer_source import answer_sources
from ..runs.controls import OffsetEffect, offset_effect
from ..runs.paper import load_paper_results, paper_entry
from ..runs.results import stored_results_dir
from ..runs.sampling import SAMPLED_TASKS, SamplingSummary, mean_sd, paper_sampled, sampling_summary
from ..runs.statistics import mean_sample_size
from .common import (
    CHOICE_TASKS,
    GREEDY_QUESTIONS,
    PAPER_MODEL,
    SIGNIFICANT,
    STORED_MODEL,
    Finding,
    accuracy_verdict,
    beside_split,
    claim_verdict,
    gpu_estimate,
    loop_share,
    paired,
    paper_gain,
    questions_needed,
    stored,
    words,
)

CONTROL_TOLERANCE = 0.05  # the control "leaves answers unchanged" if the token alone changes at most 5% of them


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
    return Finding(claim, f"points, SmolLM2-360M: {paper}", f"points, {GREEDY_QUESTIONS} questions: {ours}",
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
                   f"{GREEDY_QUESTIONS} questions per task: {ours}", verdict,
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


def pooled_questions_needed(summaries: dict[str, SamplingSummary]) -> str:
    """For each sampled task: the questions a test of the bias pooled over the seeds needs to see the paper's sampled
    gain at 80% power, given how much our questions' pooled gains spread, against the size of the whole split."""
    sizes: dict[str, tuple[float, int, int]] = {}  # the paper's gain, the questions needed, the split
    for task, summary in summaries.items():
        base, steered = (paper_sampled(task, method, PAPER_MODEL) for method in ("baseline", "cache_steering"))
        if base and steered and steered[0] != base[0] and summary.item_sd > 0:
            gain = steered[0] - base[0]
            sizes[task] = gain, mean_sample_size(summary.item_sd, gain), load_paper_results()["n"][task]
    if not sizes:
        return "The paper reports no sampled gain to size a test for"
    text = "At 80% power and our spread over the questions, a pooled test of the paper's gain needs " + "; ".join(
        f"{task} {gain:+.2f} points: {beside_split(needed, split)}" for task, (gain, needed, split) in sizes.items())
    if all(needed > split for _, needed, split in sizes.values()):
        text += ". That is more than the paper's own splits hold: no run of its table can show gains this small"
    return text


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
    first = next(iter(summaries.values()))
    n, seeds = first.pairs[0].n, len(first.pairs)  # one script made every task's runs: the same sizes
    settle = f"The sampled runs of {', '.join(unsampled)}. " if unsampled else ""
    settle += f"At {n} questions our pooled intervals are {min(widths):.0f}-{max(widths):.0f} points wide"
    if n < GREEDY_QUESTIONS:
        shrink = (n / GREEDY_QUESTIONS) ** 0.5
        settle += (f", and the {GREEDY_QUESTIONS} questions of the greedy table would narrow them only to about "
                   f"{min(widths) * shrink:.0f}-{max(widths) * shrink:.0f} (an interval narrows as one over the "
                   "square root of the questions)")
    settle += f". {pooled_questions_needed(summaries)}"
    return Finding("Sampled, cache steering is ahead of the baseline on average (the paper's sampling table)",
                   f"points, SmolLM2-360M, mean ± sd over 5 seeds: {'; '.join(paper)}",
                   f"points pooled over {seeds} seeds, [95% bootstrap interval over {n} questions]: {'; '.join(ours)}",
                   claim_verdict(better, worse, f"**Not confirmed**: the pooled interval holds zero on "
                                 f"{', '.join(summaries)}"), settle)


def evaluation_findings() -> list[Finding]:
    """The claims of the paper's results table and its ablation (notebook 5): longer answers, accuracy, CoT plus
    steering, its control (the offset token alone), and robustness to the settings."""
    return [length_row(),
            comparison_row("Cache steering raises accuracy", "cache_steering", "baseline"),
            comparison_row("Steering adds to a CoT prompt", "cache_steering_cot", "cot"),
            sampling_row(), control_row(), ablation_row()]
