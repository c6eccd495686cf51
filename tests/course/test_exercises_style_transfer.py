"""Notebook 7's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import json

import pytest
import torch

import cachesteer_lite as cs
from cachesteer_lite.core.generation import Completion
from cachesteer_lite.core.vectors import VectorMetadata
from cachesteer_lite.course import style_transfer as nb07
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.style import TARGET_STYLES, StyleClassifier, rule_labels

UNSTEERED = ["Step 1: Friction turns motion into heat. Step 2: Dry palms grip best, so the answer is A.",
             "The answer is A: dry palms, because water and oil act as lubricants."]


@pytest.fixture(scope="module")
def classifier():
    return StyleClassifier.shipped(include_default=True)


@pytest.fixture(scope="module")
def answers():
    """Live answers as notebook 7 holds them: the unsteered ones, and per style the ones steered towards it."""
    steered = {style: [Completion(f"{style.replace('_', ' ')} reasoning: the answer is B.", 8)] * 2
               for style in TARGET_STYLES}
    steered["analogical"] = [Completion("Think of a wet kitchen floor: it slips. So the answer is B.", 12)] * 2
    return {"unsteered": [Completion(text, 20) for text in UNSTEERED], **steered}


@pytest.fixture(scope="module")
def stored():
    return json.loads(cs.book_file("data/results/smollm2-135m-instruct/style_transfer/summary.json").read_text())


def counts(labels):
    return {style: labels.count(style) for style in TARGET_STYLES}


def test_floor(classifier, answers, stored):
    expected = counts(classifier.predict(UNSTEERED))
    verdict = nb07.check_floor(expected, classifier, answers, stored)
    assert verdict.correct and "false-positive rate" in verdict.message
    assert "strategy_execution 7/20" in verdict.message  # the stored grid's unsteered floor
    assert nb07.check_floor({**expected, "default": 1}, classifier, answers).correct
    rules = counts(rule_labels(UNSTEERED))  # the rules miss the second text's analogy-free "style"
    assert rules != expected and "rules' counts" in nb07.check_floor(rules, classifier, answers).message
    steered = {style: classifier.predict([c.text for c in answers[style]]).count(style) for style in TARGET_STYLES}
    assert steered != expected and "steered answers" in nb07.check_floor(steered, classifier, answers).message
    assert "missing: strategy_execution, causal_chain" in nb07.check_floor({"stepwise": 1}, classifier, answers).message
    assert "share" in nb07.check_floor({style: 0.5 for style in TARGET_STYLES}, classifier, answers).message
    assert "whole number" in nb07.check_floor({style: float("inf") for style in TARGET_STYLES}, classifier,
                                              answers).message
    assert "between 0 and 2" in nb07.check_floor({style: 3 for style in TARGET_STYLES}, classifier, answers).message


def test_paper_markers(stored):
    expected = nb07.marker_counts(6.0)  # the stored c6 answers: stepwise 13 and strategy_execution 2 open with it
    assert expected == {"stepwise": 13, "strategy_execution": 2, "causal_chain": 0, "annotated_deduction": 0,
                        "analogical": 0}
    verdict = nb07.check_paper_markers(expected, stored)
    assert verdict.correct and "strategy_execution 2 by marker against 0 by rules" in verdict.message
    assert "17 to 20 of 20" in verdict.message
    rules = {style: 13 if style == "stepwise" else int(style in ("causal_chain", "analogical"))
             for style in TARGET_STYLES}
    assert "our rules' counts" in nb07.check_paper_markers(rules, stored).message
    assert "c_values 10" in nb07.check_paper_markers(nb07.marker_counts(10.0), stored).message
    assert "items.jsonl" in nb07.check_paper_markers({**expected, "stepwise": 12}, stored).message


def vectors():
    fingerprint = {"architecture": "LlamaForCausalLM", "n_layers": 3, "n_kv_heads": 2, "head_dim": 4}
    meta = VectorMetadata("test", fingerprint, -1, ["\n"], 2)
    generator = torch.Generator().manual_seed(0)
    shape = (3, 2, 4)
    return {style: cs.SteeringVector(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator),
                                     meta) for style in ("stepwise", "analogical")}


def test_mixed_vector():
    styles = vectors()
    a, b = styles["stepwise"], styles["analogical"]
    verdict = nb07.check_mixed_vector(cs.SteeringVector(a.keys + b.keys, a.values + b.values, a.metadata), styles)
    assert verdict.correct and "cosine" in verdict.message
    mean = cs.SteeringVector((a.keys + b.keys) / 2, (a.values + b.values) / 2, a.metadata)
    assert "mean of the two" in nb07.check_mixed_vector(mean, styles).message
    values_only = cs.SteeringVector(a.keys, a.values + b.values, a.metadata)
    assert "the keys are not" in nb07.check_mixed_vector(values_only, styles).message
    difference = cs.SteeringVector(a.keys - b.keys, a.values - b.values, a.metadata)
    assert "difference" in nb07.check_mixed_vector(difference, styles).message
    assert "one style's vector alone" in nb07.check_mixed_vector(a, styles).message
    assert "SteeringVector" in nb07.check_mixed_vector(a.values, styles).message


@pytest.mark.parametrize("answer", [..., None, "stepwise", (1, 2)])
def test_blank_or_malformed_answers_get_a_message(answer, classifier, answers, stored):
    for verdict in (nb07.check_floor(answer, classifier, answers), nb07.check_paper_markers(answer, stored),
                    nb07.check_mixed_vector(answer, vectors())):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
