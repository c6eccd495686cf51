"""Steering-vector extraction, metadata, saving and loading, and compatibility checks."""

from __future__ import annotations

import json

import pytest
import torch

from cachesteer_lite import (
    Demonstration,
    IncompatibleVectorError,
    PromptTooLongError,
    SteeringVector,
    contrastive_pair,
    extract_steering_vector,
)
from cachesteer_lite.tasks.traces import read_traces

from conftest import REPO, tiny_model


@pytest.fixture(scope="module")
def arc_pairs(smollm2):
    """Six real contrastive pairs: ARC train questions with one hand-written trace demonstration each."""
    _, tokenizer = smollm2
    traces = read_traces(REPO / "data" / "traces" / "arc_challenge.jsonl")
    demos = [Demonstration(t.question, t.reasoning, t.answer) for t in traces[:7]]
    return [contrastive_pair(tokenizer, [demos[i + 1]], demos[i].question) for i in range(6)]


@pytest.fixture(scope="module")
def arc_vector(smollm2, arc_pairs):
    model, tokenizer = smollm2
    return extract_steering_vector(model, tokenizer, arc_pairs, batch_size=4, progress=False)


def test_vector_shape_and_metadata(smollm2, arc_pairs, arc_vector):
    assert arc_vector.keys.shape == arc_vector.values.shape == (30, 3, 64)
    meta = arc_vector.metadata
    assert meta.model_id == "smollm2-135m-instruct"
    assert meta.fingerprint == {"architecture": "LlamaForCausalLM", "n_layers": 30, "n_kv_heads": 3, "head_dim": 64}
    assert meta.n_pairs == 6 and meta.token_offset == -1
    assert meta.token_texts == ["\n"]  # SmolLM2's generation prompt ends in "\n"
    assert arc_vector.values[1:].abs().sum() > 0


def test_layer0_value_difference_is_zero_when_prompts_end_alike(arc_vector):
    # Layer 0's value depends only on the token itself: the same last token gives the same value.
    assert torch.equal(arc_vector.values[0], torch.zeros_like(arc_vector.values[0]))


@pytest.mark.slow
def test_batched_extraction_equals_one_by_one(smollm2, arc_pairs, arc_vector):
    model, tokenizer = smollm2
    one_by_one = extract_steering_vector(model, tokenizer, arc_pairs, batch_size=1, progress=False)
    torch.testing.assert_close(arc_vector.keys, one_by_one.keys, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(arc_vector.values, one_by_one.values, atol=1e-4, rtol=1e-4)


def test_vector_is_the_mean_of_pairwise_differences(smollm2, arc_pairs, arc_vector):
    model, tokenizer = smollm2
    singles = [extract_steering_vector(model, tokenizer, [pair], progress=False) for pair in arc_pairs[:2]]
    two = extract_steering_vector(model, tokenizer, arc_pairs[:2], progress=False)
    torch.testing.assert_close(two.values, (singles[0].values + singles[1].values) / 2, atol=1e-5, rtol=1e-5)


def test_token_offset_reads_an_earlier_token(smollm2, arc_pairs):
    model, tokenizer = smollm2
    vector = extract_steering_vector(model, tokenizer, arc_pairs[:2], token_offset=-2, progress=False)
    # "assistant" is two BPE tokens, "ass" + "istant"
    assert vector.metadata.token_offset == -2 and vector.metadata.token_texts == ["istant"]


def test_save_and_load_round_trip_bit_exactly(arc_vector, tmp_path):
    tensors_path, meta_path = arc_vector.save(tmp_path / "arc")
    assert tensors_path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    loaded = SteeringVector.load(meta_path)  # either file or the stem names the vector
    assert torch.equal(loaded.keys, arc_vector.keys) and torch.equal(loaded.values, arc_vector.values)
    assert loaded.metadata == arc_vector.metadata
    assert json.loads(meta_path.read_text())["n_pairs"] == 6


def test_loading_a_half_saved_vector_says_what_is_missing(arc_vector, tmp_path):
    tensors_path, meta_path = arc_vector.save(tmp_path / "arc")
    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match="arc.json"):
        SteeringVector.load(tensors_path)


@pytest.mark.slow
def test_vector_from_another_model_is_refused(gemma3, arc_vector):
    model, _ = gemma3
    with pytest.raises(IncompatibleVectorError, match=r"n_layers.*30.*n_layers.*18"):
        arc_vector.check_compatible(model)


def test_same_shapes_but_other_model_name_only_warns(arc_vector, smollm2):
    model, _ = smollm2
    renamed = SteeringVector(arc_vector.keys, arc_vector.values, arc_vector.metadata)
    renamed.metadata = type(arc_vector.metadata)(**{**arc_vector.metadata.__dict__, "model_id": "other"})
    with pytest.warns(UserWarning, match="extracted from 'other'"):
        renamed.check_compatible(model)


def test_bad_extraction_inputs_fail_clearly(smollm2):
    model, tokenizer = smollm2
    with pytest.raises(ValueError, match="no contrastive pairs"):
        extract_steering_vector(model, tokenizer, [], progress=False)
    with pytest.raises(ValueError, match="must be negative"):
        extract_steering_vector(model, tokenizer, [("a", "b")], token_offset=0, progress=False)


def test_prompt_longer_than_the_context_is_refused(smollm2):
    _, tokenizer = smollm2
    model = tiny_model(max_position_embeddings=32)
    long_text = "word " * 40
    with pytest.raises(PromptTooLongError, match="context of 32 tokens"):
        extract_steering_vector(model, tokenizer, [(long_text, long_text)], progress=False)
