"""Notebook 4's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import pytest

import cachesteer_lite as cs
from cachesteer_lite.course import application
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.runs.methods import VECTOR_FILE
from cachesteer_lite.runs.results import stored_results_dir

MAX_NEW_TOKENS = 24  # small settings: two questions, short answers


@pytest.fixture(scope="module")
def runs(smollm2):
    """Notebook 4's objects at a small size: prompts, the stored ARC vector and the runs the checkers compare with."""
    model, tokenizer = smollm2
    vector = cs.SteeringVector.load(stored_results_dir() / "smollm2-135m-instruct" / "arc_challenge"
                                    / "cache_steering" / VECTOR_FILE)
    prompts = [cs.chat_prompt(tokenizer, item.question) for item in cs.load_items("arc_challenge", "test", limit=2)]

    def answer(**steering):
        return cs.generate(model, tokenizer, prompts, max_new_tokens=MAX_NEW_TOKENS, progress=False, **steering)

    return {"model": model, "tokenizer": tokenizer, "prompts": prompts, "vector": vector, "plain": answer(),
            **{c: answer(vector=vector, c_values=c) for c in (0.0, 4.0, 6.0)},
            "keys": answer(vector=vector, c_keys=1.0, c_values=0.0), "negative": answer(vector=vector, c_values=-4.0)}


def check_keys(answer, runs) -> Feedback:
    return application.check_key_steering(answer, runs["model"], runs["tokenizer"], runs["prompts"], runs["vector"],
                                          value_steered=runs[6.0], offset_only=runs[0.0],
                                          max_new_tokens=MAX_NEW_TOKENS)


def check_negative(answer, runs) -> Feedback:
    return application.check_negative_steering(answer, runs["model"], runs["tokenizer"], runs["prompts"],
                                               runs["vector"], plain=runs["plain"], positive=runs[4.0],
                                               max_new_tokens=MAX_NEW_TOKENS)


def test_cut_off():
    done, cut = cs.Completion("C: yes", 3), cs.Completion("Let us think " * 10, 80)
    sweep = {0: [done, cut], 2: [cut, cut], 4: [done, done]}
    check = application.check_cut_off
    verdict = check({0: 0.5, 2: 1.0, 4: 0.0}, sweep, 80)
    assert verdict.correct and "c=2: 100%" in verdict.message and "lower bounds" in verdict.message
    assert "counts" in check({0: 1, 2: 2, 4: 0}, sweep, 80).message
    assert "finished" in check({0: 0.5, 2: 0.0, 4: 1.0}, sweep, 80).message
    assert "`>=`" in check({0: 0.0, 2: 0.0, 4: 0.0}, sweep, 80).message
    assert "one entry per coefficient" in check({0: 0.5, 2: 1.0}, sweep, 80).message
    assert "dict" in check([0.5, 1.0, 0.0], sweep, 80).message


def test_key_steering(runs):
    verdict = check_keys(runs["keys"], runs)
    assert verdict.correct and "c_keys=1" in verdict.message and "c_values=6" in verdict.message, verdict
    values = check_keys(runs[6.0], runs)
    assert not values.correct and "value-steered" in values.message
    assert "c = 0 answers" in check_keys(runs[0.0], runs).message
    assert "one completion per prompt" in check_keys(runs["keys"][:1], runs).message


def test_other_settings_get_the_generic_hint(runs):
    verdict = check_keys(runs["negative"], runs)
    assert not verdict.correct and "not the greedy answers with c_keys=1 and c_values=0" in verdict.message


def test_negative_steering(runs):
    verdict = check_negative(runs["negative"], runs)
    assert verdict.correct and "c_values=-4" in verdict.message and "unsteered" in verdict.message, verdict
    positive = check_negative(runs[4.0], runs)
    assert not positive.correct and "minus sign" in positive.message
    assert "unsteered answers" in check_negative(runs["plain"], runs).message


@pytest.mark.parametrize("answer", [..., None, "forty", (1, 2), [object()]])
def test_blank_or_malformed_answers_get_a_message(answer, runs):
    for verdict in (application.check_cut_off(answer, {0: runs["plain"]}, MAX_NEW_TOKENS), check_keys(answer, runs),
                    check_negative(answer, runs)):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
