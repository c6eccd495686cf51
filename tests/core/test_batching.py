"""Batches built by length: the rules every plan keeps, its padding efficiency, and the device's token budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachesteer_lite import Demonstration, contrastive_pair
from cachesteer_lite.core.batching import (
    CPU_TOKEN_BUDGET,
    default_token_budget,
    length_batches,
    padding_efficiency,
    token_lengths,
)
from cachesteer_lite.core.vectors import pair_texts
from cachesteer_lite.tasks.traces import read_traces

from conftest import REPO, tiny_model


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 2000), max_size=60),
    max_rows=st.integers(1, 20),
    token_budget=st.none() | st.integers(1, 8000),
    extra=st.integers(0, 300),
    min_efficiency=st.floats(0, 1),
)
def test_every_plan_keeps_the_rules(lengths, max_rows, token_budget, extra, min_efficiency):
    batches = length_batches(lengths, max_rows=max_rows, token_budget=token_budget, extra=extra,
                             min_efficiency=min_efficiency)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))  # each prompt once
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat, reverse=True)  # longest first, so a batch's first prompt is its longest
    for batch in batches:
        longest = lengths[batch[0]]
        assert len(batch) <= max_rows
        if len(batch) > 1:  # a prompt over the budget runs alone; a shared batch fits it
            assert token_budget is None or len(batch) * (longest + extra) <= token_budget
            real = sum(lengths[i] + extra for i in batch)
            assert real >= min_efficiency * len(batch) * (longest + extra) - 1e-9
    assert padding_efficiency(lengths, batches, extra) >= min_efficiency - 1e-9


def test_contrastive_prompts_split_into_positives_and_negatives():
    """The issue's example: positives of ~600 tokens and negatives of ~350 padded together waste a quarter of
    the slots; grouped by length they do not share a batch."""
    lengths = [684, 640, 600, 572, 409, 380, 350, 308]
    fixed = length_batches(lengths, max_rows=16, min_efficiency=0.0)
    grouped = length_batches(lengths, max_rows=16)
    assert fixed == [[0, 1, 2, 3, 4, 5, 6, 7]]
    assert grouped == [[0, 1, 2, 3], [4, 5, 6], [7]]  # 308 tokens beside 409 would fall under 90%
    assert padding_efficiency(lengths, fixed) == pytest.approx(sum(lengths) / (8 * 684))
    assert padding_efficiency(lengths, grouped) > 0.9


def test_token_budget_counts_the_tokens_still_to_come():
    assert length_batches([100] * 4, max_rows=16, token_budget=400) == [[0, 1, 2, 3]]
    assert length_batches([100] * 4, max_rows=16, token_budget=400, extra=1) == [[0, 1, 2], [3]]
    assert length_batches([500, 100], max_rows=16, token_budget=400) == [[0], [1]]  # too long: runs alone


def test_padding_efficiency_of_no_batches_or_equal_lengths_is_one():
    assert padding_efficiency([], []) == 1.0
    assert padding_efficiency([7, 7, 7], [[0, 1, 2]]) == 1.0


def test_tokens_to_come_count_as_real_in_both_rows():
    """A generation batch of a 100- and a 50-token prompt that each decode 150 tokens fills 450 of 500 slots: the
    padding is a small part of what the batch computes, so it is not split for it."""
    assert padding_efficiency([100, 50], [[0, 1]], extra=150) == pytest.approx(450 / 500)
    assert length_batches([100, 50], max_rows=2, extra=150, min_efficiency=0.8) == [[0, 1]]
    assert length_batches([100, 50], max_rows=2, min_efficiency=0.8) == [[0], [1]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_rows=0), "max_rows"),
    (dict(max_rows=2, token_budget=0), "token_budget"),
    (dict(max_rows=2, min_efficiency=1.5), "min_efficiency"),
    (dict(max_rows=2, min_efficiency=float("nan")), "min_efficiency"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        length_batches([3, 2, 1], **kwargs)


def test_a_cpu_model_gets_the_cpu_budget():
    assert default_token_budget(tiny_model()) == CPU_TOKEN_BUDGET


@pytest.mark.parametrize("n_pairs", [4, 6])  # test_caa's pairs, test_vectors' pairs
def test_the_oracle_prompts_are_batched_with_padding(smollm2, n_pairs):
    """The extraction oracles (batched = one by one, in test_vectors and test_caa) only test something if the
    default plan for their prompts puts prompts of different lengths in one batch."""
    model, tokenizer = smollm2
    traces = read_traces(REPO / "data" / "traces" / "arc_challenge.jsonl")
    demos = [Demonstration(t.question, t.reasoning, t.answer) for t in traces[: n_pairs + 1]]
    pairs = [contrastive_pair(tokenizer, [demos[i + 1]], demos[i].question) for i in range(n_pairs)]
    lengths = token_lengths(tokenizer, pair_texts(pairs))
    batches = length_batches(lengths, max_rows=16, token_budget=default_token_budget(model))
    assert any(len({lengths[i] for i in batch}) > 1 for batch in batches)
    assert padding_efficiency(lengths, batches) >= 0.9
