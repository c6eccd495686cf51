"""Notebook 1's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import pytest
import torch

import cachesteer_lite as cs
from cachesteer_lite.core.vectors import VectorMetadata, model_id
from cachesteer_lite.course import kv_cache
from cachesteer_lite.course.feedback import Feedback


@pytest.fixture(scope="module")
def experiment(smollm2):
    """Notebook 1's last experiment: a prompt plus offset and a unit-norm random direction in the values."""
    model, tokenizer = smollm2
    fingerprint = cs.model_fingerprint(model)
    batch = cs.encode(tokenizer, [cs.chat_prompt(tokenizer, "What is the capital of France?")])
    ids, mask = cs.append_offset(tokenizer, batch.input_ids, batch.attention_mask)
    direction = torch.randn(fingerprint["n_layers"], fingerprint["n_kv_heads"], fingerprint["head_dim"],
                            generator=torch.Generator().manual_seed(0))
    direction = direction / direction.norm(dim=-1, keepdim=True)
    meta = VectorMetadata(model_id(model), fingerprint, -1, ["\n"], 0)
    random_vector = cs.SteeringVector(torch.zeros_like(direction), direction, meta)
    coefficients = [0.0, 8.0, 16.0]
    value_kl = kv_cache.next_token_kl(model, ids, mask, random_vector, coefficients, "values")
    return model, ids, mask, random_vector, coefficients, value_kl


def test_cache_kib(smollm2):
    fingerprint = cs.model_fingerprint(smollm2[0])  # SmolLM2-135M: 30 layers, 3 KV heads of 64, 9 query heads
    check = kv_cache.check_cache_kib
    assert check(2000 * 2 * 30 * 3 * 64 * 2 / 1024, fingerprint, n_query_heads=9).correct
    float32 = check(2000 * 2 * 30 * 3 * 64 * 4 / 1024, fingerprint, n_query_heads=9)
    assert not float32.correct and "float32" in float32.message
    assert "KV heads" in check(3 * 45000, fingerprint, n_query_heads=9).message
    assert "keys *and* values" in check(22500, fingerprint, n_query_heads=9).message


def test_key_edit(experiment):
    model, ids, mask, random_vector, coefficients, value_kl = experiment
    key_vector = cs.SteeringVector(random_vector.values, torch.zeros_like(random_vector.values),
                                   random_vector.metadata)
    reference = kv_cache.next_token_kl(model, ids, mask, key_vector, coefficients, "keys")
    verdict = kv_cache.check_key_edit(reference, model, ids, mask, random_vector, coefficients, value_kl)
    assert verdict.correct and "less sensitive" in verdict.message  # SmolLM2: about 5x less at c = 16
    flat = kv_cache.check_key_edit([0.0] * 3, model, ids, mask, random_vector, coefficients, value_kl)
    assert not flat.correct and "zero keys" in flat.message  # the old solution's mistake
    again = kv_cache.check_key_edit(value_kl, model, ids, mask, random_vector, coefficients, value_kl)
    assert not again.correct and "value curve" in again.message


@pytest.mark.parametrize("answer", [..., None, "forty", (1, 2)])
def test_blank_or_malformed_answers_get_a_message(answer, experiment):
    model, ids, mask, random_vector, coefficients, value_kl = experiment
    for verdict in (kv_cache.check_cache_kib(answer, cs.model_fingerprint(model), n_query_heads=9),
                    kv_cache.check_key_edit(answer, model, ids, mask, random_vector, coefficients, value_kl)):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
