"""Checkers for notebook 7, "Reasoning-style transfer, measured"."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.generation import Completion
from ..core.vectors import SteeringVector
from ..files import book_file
from ..findings import STORED_MODEL
from ..runs.records import read_records
from ..style import TARGET_STYLES, StyleClassifier, rule_labels
from .feedback import Feedback, checker, correct, wrong

# The paper ships no code for its adherence count; one regular expression per style, matched at the start of the
# answer after its leading whitespace, reproduces its 17 to 20 of 20 (SmolLM2-360M) from its stored answers
# (paper-reference section 6).
PAPER_MARKERS: dict[str, str] = {
    "stepwise": r"^Step 1",
    "strategy_execution": r"^Strategy:",
    "causal_chain": r"^If\b",
    "annotated_deduction": r"^\[",
    "analogical": r"(?i)^just like",
}


def style_counts(answer: Any, n: int) -> dict[str, int] | str:
    """``answer`` as {target style: count from 0 to n}, or a sentence saying what is wrong with it. A ``default``
    key is ignored (it is no target style)."""
    if not isinstance(answer, Mapping):
        return "give a dict {style: count} with one entry for each of the five target styles"
    missing = [style for style in TARGET_STYLES if style not in answer]
    unknown = [key for key in answer if key not in TARGET_STYLES and key != "default"]
    if missing or unknown:
        return (f"give one count for each of {', '.join(TARGET_STYLES)}"
                + (f" (missing: {', '.join(missing)})" if missing else f" ({unknown[0]!r} is no target style)"))
    counts = {}
    for style in TARGET_STYLES:
        value = answer[style]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value != int(value):
            share = isinstance(value, float) and 0 < value < 1
            return f"{style}: give the number of answers" + (", not their share" if share else ", a whole number")
        if not 0 <= value <= n:
            return f"{style}: there are {n} answers, so the count lies between 0 and {n}"
        counts[style] = int(value)
    return counts


def label_counts(labels: Sequence[str]) -> dict[str, int]:
    """How many of ``labels`` name each target style."""
    return {style: sum(label == style for label in labels) for style in TARGET_STYLES}


@checker("answer_1 = a dict {style: how many live unsteered answers the classifier assigns to that style}, for "
         "the five target styles")
def check_floor(answer: Mapping[str, int], classifier: StyleClassifier, answers: Mapping[str, Sequence[Completion]],
                stored: Mapping[str, Any] | None = None) -> Feedback:
    """Exercise 1: the classifier's false positives on answers nobody steered. Names the slips of counting with
    the rules or on the steered answers; ``stored`` (the grid's summary.json) adds the stored 20-question floor."""
    unsteered = [completion.text for completion in answers["unsteered"]]
    counts = style_counts(answer, len(unsteered))
    if isinstance(counts, str):
        return wrong(counts)
    expected = label_counts(classifier.predict(unsteered))
    if counts == expected:
        found = ", ".join(f"{style} {count}" for style, count in expected.items() if count) or "no style at all"
        floor = "" if stored is None else " On the stored grid's 20 unsteered answers: " + ", ".join(
            f"{row['scored_style']} {row['classifier_count']}/{row['n']}" for row in stored["rows"]
            if row["steered_style"] == "unsteered" and row["classifier_count"]) + "."
        return correct(f"of {len(unsteered)} unsteered answers the classifier finds {found}. That is its false-"
                       f"positive rate on this model's ordinary output: an adherence share means something only "
                       f"well above it.{floor}")
    if counts == label_counts(rule_labels(unsteered)) != expected:
        return wrong("these are the rules' counts: the floor asked for is the classifier's, classifier.predict(...)")
    steered = {style: classifier.predict([c.text for c in answers[style]]).count(style)
               for style in TARGET_STYLES if style in answers}
    if len(steered) == len(TARGET_STYLES) and counts == steered != expected:
        return wrong('these are the steered answers\' counts (the live table\'s "classifier" column): the floor '
                     'comes from answers["unsteered"], which nobody steered')
    return wrong('classify the texts of answers["unsteered"] with classifier.predict and count each target style')


def marker_counts(c_values: float = 6.0, model: str = STORED_MODEL) -> dict[str, int]:
    """For each style, how many stored answers steered towards it at ``c_values`` open with the paper's marker."""
    counts = {}
    for style, marker in PAPER_MARKERS.items():
        records = read_records(book_file(f"data/results/{model}/style_transfer/{style}/c{c_values:g}/items.jsonl"))
        texts = [record["response"].lstrip() for record in records.values()]
        counts[style] = sum(bool(re.match(marker, text)) for text in texts)
    return counts


@checker("answer_2 = a dict {style: how many of the 20 stored answers steered at c_values 6 open with the "
         "paper's marker for that style}")
def check_paper_markers(answer: Mapping[str, int], stored: Mapping[str, Any], c_values: float = 6.0) -> Feedback:
    """Exercise 2: the paper's start-of-answer markers on the stored items files. Names the slips: our rules'
    counts (the stored grid's), another coefficient's files. ``stored`` is the grid's summary.json."""
    rows = {(row["scored_style"], row["c_values"]): row for row in stored["rows"]
            if row["steered_style"] != "unsteered"}
    n = int(rows[(TARGET_STYLES[0], c_values)]["n"])
    counts = style_counts(answer, n)
    if isinstance(counts, str):
        return wrong(counts)
    expected = marker_counts(c_values, stored["model"])
    rules = {style: int(rows[(style, c_values)]["rules_count"]) for style in TARGET_STYLES}
    if counts == expected:
        changes = [f"{style} {expected[style]} by marker against {rules[style]} by rules" for style in TARGET_STYLES
                   if expected[style] != rules[style]]
        same = [style for style in TARGET_STYLES if expected[style] == rules[style] and expected[style]]
        return correct(f"{', '.join(f'{s} {expected[s]}/{n}' for s in TARGET_STYLES)} open with the paper's marker. "
                       + (f"They differ from our rules for {'; '.join(changes)}: a marker counts answers that open "
                          "in the style (or with its own word, not the rule's), our rules also ask for the "
                          "structure. " if changes else "")
                       + (f"{', '.join(same)}: the same by both. " if same else "")
                       + "Either way this is far from the paper's 17 to 20 of 20 on SmolLM2-360M.")
    if counts == rules:
        return wrong("these are our rules' counts (the stored grid's rules_count): apply the paper's regular "
                     "expressions, re.match(marker, response.lstrip()), to the responses of the items files")
    for other in sorted({c for _, c in rows} - {c_values}):
        if counts == marker_counts(other, stored["model"]):
            return wrong(f"these are the answers steered at c_values {other:g}: read the c{c_values:g} folders")
    return wrong(f"for each style read data/results/{stored['model']}/style_transfer/{{style}}/c{c_values:g}/"
                 "items.jsonl and count the responses that match its marker at the start, after lstrip()")


def mean_cosine(first: torch.Tensor, second: torch.Tensor) -> float:
    """Cosine of two [layer, head, dim] tensors per layer, averaged over the layers where both are non-zero."""
    a, b = first.flatten(1).float(), second.flatten(1).float()
    live = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)
    return float(torch.nn.functional.cosine_similarity(a[live], b[live], dim=1).mean())


@checker("answer_3 = the mixed SteeringVector: the sum of the two style vectors' keys and of their values")
def check_mixed_vector(answer: SteeringVector, vectors: Mapping[str, SteeringVector], first: str = "stepwise",
                       second: str = "analogical") -> Feedback:
    """Exercise 3: the sum of two style vectors (steered at half the coefficient). Names the slips: the mean, a
    difference, only the values summed, one style alone."""
    if not isinstance(answer, SteeringVector):
        return wrong("give the mixed vector itself, a cs.SteeringVector(keys, values, metadata)")
    a, b = vectors[first], vectors[second]
    if answer.values.shape != a.values.shape or answer.keys.shape != a.keys.shape:
        return wrong(f"the mixed vector must have the style vectors' shape {tuple(a.values.shape)}")

    def same(x: torch.Tensor, y: torch.Tensor) -> bool:
        return torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-6)

    total_keys, total_values = a.keys + b.keys, a.values + b.values
    if same(answer.values, total_values) and same(answer.keys, total_keys):
        cosine = mean_cosine(a.values, b.values)
        return correct(f"the {first} and {second} vectors' values have cosine {cosine:.2f} (mean over layers): "
                       + ("they share much of their direction (both are reasoning against answer-only "
                          "demonstrations), so at half the coefficient each the mix pushes mostly that shared part "
                          "about as hard as one vector at the full coefficient, and each style's own part half as "
                          "hard" if cosine > 0.5 else "they point in different directions, so the mix pushes each "
                          "style's part half as hard as that style's vector at the full coefficient"))
    if same(answer.values, total_values / 2) and same(answer.keys, total_keys / 2):
        return wrong("this is the mean of the two vectors; the exercise sums them and steers at C_SHOW / 2 (the same "
                     "edit as the mean at C_SHOW): give the sum")
    if same(answer.values, total_values):
        return wrong("the values are summed, the keys are not: sum both, keys + keys and values + values")
    if same(answer.values, a.values - b.values) or same(answer.values, b.values - a.values):
        return wrong("this is a difference of the two vectors: add them")
    if same(answer.values, a.values) or same(answer.values, b.values):
        return wrong(f"this is one style's vector alone: add vectors[{first!r}] and vectors[{second!r}]")
    return wrong(f"expected vectors[{first!r}].keys + vectors[{second!r}].keys and the same sum of their values")
