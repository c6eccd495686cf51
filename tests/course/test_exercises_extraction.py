"""Notebook 3's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import pytest
import torch

import cachesteer_lite as cs
from cachesteer_lite.core.vectors import read_prompt_kv
from cachesteer_lite.course import extraction
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.tasks.contrastive import default_traces_path, demonstration_pool


@pytest.fixture(scope="module")
def short_pairs(smollm2):
    """Two contrastive pairs with short demonstrations: a few hundred tokens to read, not thousands."""
    _, tokenizer = smollm2
    demos = [
        cs.Demonstration("What is 12 * 3?", "10 * 3 = 30 and 2 * 3 = 6, so 12 * 3 = 30 + 6 = 36.", "36"),
        cs.Demonstration("What is 9 + 14?", "9 + 14 = 9 + 10 + 4 = 23.", "23"),
    ]
    return [cs.contrastive_pair(tokenizer, demos, q) for q in ("What is 7 * 8?", "What is 15 + 27?")]


@pytest.fixture(scope="module")
def sets(smollm2):
    """The pool and the random and nearest-neighbour sets of the first 6 ARC items, 2 demonstrations each."""
    _, tokenizer = smollm2
    settings = dict(n_pairs=6, n_demonstrations=2, traces=default_traces_path("arc_challenge"))
    pool = demonstration_pool("arc_challenge", 6)
    random_set = cs.build_contrastive_set(tokenizer, "arc_challenge", selection="random", seed=0, **settings)
    nearest = cs.build_contrastive_set(tokenizer, "arc_challenge", selection="nearest", **settings)
    return pool, random_set, nearest


def test_difference_of_means() -> None:
    n = 4
    keys, values = torch.randn(2, 2 * n, 5, 3, 8, generator=torch.Generator().manual_seed(0))
    reference = (keys[:n].mean(0) - keys[n:].mean(0), values[:n].mean(0) - values[n:].mean(0))
    verdict = extraction.check_difference_of_means(reference, keys, values, n)
    assert verdict.correct and "the mean is linear" in verdict.message
    check = extraction.check_difference_of_means
    assert "swapped" in check(reference[::-1], keys, values, n).message
    assert "sign is flipped" in check((-reference[0], -reference[1]), keys, values, n).message
    assert "sum over the 4 pairs" in check((n * reference[0], n * reference[1]), keys, values, n).message
    assert "mean over dim 0" in check((keys.mean(), values.mean()), keys, values, n).message
    assert "keys are right" in check((reference[0], reference[0]), keys, values, n).message


def test_other_token(smollm2, short_pairs) -> None:
    model, tokenizer = smollm2
    texts = [p for p, _ in short_pairs] + [n for _, n in short_pairs]
    keys, values, tokens = read_prompt_kv(model, tokenizer, texts, token_offset=-2, progress=False)
    reference = (tokens[0], float((values[:2, 0] - values[2:, 0]).abs().max()))  # the solution, on shorter pairs
    verdict = extraction.check_other_token(reference, model, tokenizer, short_pairs)
    assert reference == ("istant", 0.0) and verdict.correct and "exactly 0" in verdict.message, verdict
    check = extraction.check_other_token
    assert "token_offset=-2" in check(("\n", 0.0), model, tokenizer, short_pairs).message  # the default offset
    assert "splits it" in check(("assistant", 0.0), model, tokenizer, short_pairs).message
    key_difference = float((keys[:2, 0] - keys[2:, 0]).abs().max())
    assert key_difference > 0 and "keys" in check(("istant", key_difference), model, tokenizer, short_pairs).message
    token_id = tokenizer.convert_tokens_to_ids("istant")
    assert "as text" in check((token_id, 0.0), model, tokenizer, short_pairs).message


def test_one_token_forward_gives_the_layer0_value(smollm2, short_pairs) -> None:
    """What check_other_token relies on: layer 0's value at a token does not depend on the rest of the prompt."""
    model, tokenizer = smollm2
    _, values, _ = read_prompt_kv(model, tokenizer, [short_pairs[0][0]], token_offset=-3, progress=False)
    one_token = extraction.layer0_value(model, extraction.token_at(tokenizer, short_pairs[0][0], -3))
    torch.testing.assert_close(one_token, values[0, 0], atol=1e-5, rtol=1e-5)


def test_nearest_set(smollm2, sets) -> None:
    _, tokenizer = smollm2
    pool, random_set, nearest = sets
    verdict = extraction.check_nearest_set(nearest, tokenizer, pool, random_set)
    assert verdict.correct and "mean cosine similarity" in verdict.message, verdict
    check = extraction.check_nearest_set
    assert "selection='random'" in check(random_set, tokenizer, pool, random_set).message
    assert "not its .pairs" in check(nearest.pairs, tokenizer, pool, random_set).message
    fewer = cs.build_contrastive_set(tokenizer, "arc_challenge", n_pairs=6, n_demonstrations=1, selection="nearest")
    assert "same n_demonstrations" in check(fewer, tokenizer, pool, random_set).message


@pytest.mark.parametrize("answer", [..., None, "forty", (1, 2, 3)])
def test_blank_or_malformed_answers_get_a_message(answer, smollm2, short_pairs, sets) -> None:
    model, tokenizer = smollm2
    pool, random_set, _ = sets
    keys = values = torch.zeros(4, 3, 2, 8)
    for verdict in (extraction.check_difference_of_means(answer, keys, values, 2),
                    extraction.check_other_token(answer, model, tokenizer, short_pairs),
                    extraction.check_nearest_set(answer, tokenizer, pool, random_set)):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
