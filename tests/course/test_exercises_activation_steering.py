"""Notebook 6's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import pytest

import cachesteer_lite as cs
from cachesteer_lite.course import activation_steering as nb06
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.tasks.contrastive import default_traces_path

LAYER, TOKENS = 13, 8  # the notebook's CAA layer for SmolLM2-135M; short answers keep the regeneration cheap


@pytest.fixture(scope="module")
def experiment(smollm2):
    """Notebook 6's objects at a small size: a CAA vector from two pairs, three ARC prompts and their plain answers."""
    model, tokenizer = smollm2
    pairs = cs.build_contrastive_set(tokenizer, "arc_challenge", n_pairs=2, n_demonstrations=1, selection="random",
                                     seed=0, traces=default_traces_path("arc_challenge")).pairs
    vector = cs.extract_activation_vector(model, tokenizer, pairs, progress=False)
    prompts = [cs.chat_prompt(tokenizer, item.question) for item in cs.load_items("arc_challenge", "test", limit=3)]
    plain = cs.generate(model, tokenizer, prompts, max_new_tokens=TOKENS, progress=False)
    return model, tokenizer, prompts, plain, vector


def changed(experiment, layer: int, multiplier: float, mode: str) -> int:
    model, tokenizer, prompts, plain, vector = experiment
    return nb06.changed_answers(model, tokenizer, prompts, plain, vector, layer=layer, multiplier=multiplier,
                                mode=mode, max_new_tokens=TOKENS)


def test_one_shot_changes(experiment):
    model, tokenizer, prompts, plain, vector = experiment
    expected = changed(experiment, LAYER, 5.0, "one_shot")

    def check(answer):
        return nb06.check_one_shot_changes(answer, model, tokenizer, prompts, plain, vector, LAYER, TOKENS)

    verdict = check(float(expected))
    assert verdict.correct and f"{expected} of 3 answers changed" in verdict.message
    assert "stayed the same" in check(3 - expected).message  # 3 is odd: never the expected count itself
    assert "share" in check(0.5).message
    assert "only 3 questions" in check(7).message
    assert "whole number" in check(float("inf")).message
    cached = changed(experiment, LAYER, 5.0, "cached")
    if cached not in (expected, 3 - expected):
        assert '"cached"' in check(cached).message


def test_layer_sweep(experiment):
    model, tokenizer, prompts, plain, vector = experiment
    prompts, plain = prompts[:1], plain[:1]  # one question: three layers are regenerated per check
    layers = (7, LAYER, 22)
    reference = {layer: nb06.changed_answers(model, tokenizer, prompts, plain, vector, layer=layer, multiplier=3.0,
                                             mode="cached", max_new_tokens=TOKENS) for layer in layers}

    def check(answer, **kwargs):
        return nb06.check_layer_sweep(answer, model, tokenizer, prompts, plain, vector, LAYER, TOKENS, **kwargs)

    norms = [0.1 * layer for layer in range(30)]  # grows with depth, like the notebook's residual-stream curve
    verdict = check(reference, relative_norms=norms)
    assert verdict.correct and "relative vector sizes 0.70, 1.30, 2.20" in verdict.message
    assert "include LAYER (13)" in check({7: reference[7], 22: reference[22]}).message
    assert "share" in check({layer: 0.5 for layer in reference}).message
    assert "not a layer" in check({**reference, 40: 1}).message
    assert "between 0 and 1" in check({**reference, 22: 2}).message
    flipped = {layer: 1 - count for layer, count in reference.items()}
    assert "stayed the same" in check(flipped).message
    assert "at layer 22" in check({**reference, 22: 1 - reference[22]}).message


def test_cache_less_cost():
    check = nb06.check_cache_less_cost
    verdict = check(83_840)
    assert verdict.correct and "83,840" in verdict.message and "455" in verdict.message
    assert check(83_840.0).correct
    timed = check(83_840, measured_ratios={"1": {"caa_paper": 6.7}, "4": {"caa_paper": 9.9}})
    assert "6.7x at batch 1" in timed.message
    assert "one position too many" in check(256 * 200 + 256 * 257 // 2).message
    assert "approximation" in check(256 * 200 + 256 * 256 // 2).message
    assert "*with* a cache" in check(456).message and "*with* a cache" in check(455).message
    assert "sequence grows" in check(51_200).message
    assert "final length" in check(256 * 456).message
    assert "add up" in check(12_345).message


@pytest.mark.parametrize("answer", [..., None, "many", (1, 2)])
def test_blank_or_malformed_answers_get_a_message(answer, experiment):
    model, tokenizer, prompts, plain, vector = experiment
    for verdict in (nb06.check_one_shot_changes(answer, model, tokenizer, prompts, plain, vector, LAYER, TOKENS),
                    nb06.check_layer_sweep(answer, model, tokenizer, prompts, plain, vector, LAYER, TOKENS),
                    nb06.check_cache_less_cost(answer)):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
