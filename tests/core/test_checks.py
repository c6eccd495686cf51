"""Coefficients, counts and layers are checked where they enter the library: a bad value fails at once with a
sentence naming it and what is allowed, instead of steering nothing (NaN) or failing deep inside torch."""

from __future__ import annotations

import math

import pytest
import torch

from cachesteer_lite import (
    ActivationVector,
    EvalConfig,
    SteeringVector,
    caa_generate,
    generate,
    model_fingerprint,
    steered_cache,
)
from cachesteer_lite.core.caa import ActivationMetadata, activation_fingerprint
from cachesteer_lite.core.checks import finite_number, integer, layer_indices
from cachesteer_lite.core.vectors import VectorMetadata, model_id

from conftest import tiny_model

PROMPTS = ["What is 2 + 2?"]


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model()
    vector = SteeringVector(torch.ones(3, 2, 16), torch.ones(3, 2, 16),
                           VectorMetadata(model.name_or_alias, model_fingerprint(model), -1, ["\n"], 1))
    return model, vector


@pytest.mark.parametrize("value, error, message", [
    (math.nan, ValueError, "c_values must be a finite number, got nan"),
    (math.inf, ValueError, "c_values must be a finite number, got inf"),
    ("6", TypeError, "c_values must be a number, got str '6'"),
    (True, TypeError, "c_values must be a number, got bool"),
    ([6.0], TypeError, "c_values must be a number, got list"),
])
def test_bad_coefficients_are_refused_before_anything_runs(smollm2, tiny, value, error, message):
    _, tokenizer = smollm2
    model, vector = tiny
    with pytest.raises(error, match=message):
        generate(model, tokenizer, PROMPTS, vector, c_values=value, max_new_tokens=2, progress=False)
    batch = tokenizer(PROMPTS, return_tensors="pt")
    with pytest.raises(error, match=message.replace("c_values", "c_keys")):
        steered_cache(model, batch.input_ids, batch.attention_mask, vector, c_keys=value)


def test_coefficients_without_a_vector_are_refused(smollm2, tiny):
    _, tokenizer = smollm2
    model, _ = tiny
    with pytest.raises(ValueError, match="c_values given without a steering vector"):
        generate(model, tokenizer, PROMPTS, c_values=4.0, max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match="c_keys, layers given without a steering vector"):
        generate(model, tokenizer, PROMPTS, c_keys=1.0, layers=[1], max_new_tokens=2, progress=False)
    plain = generate(model, tokenizer, PROMPTS, max_new_tokens=2, progress=False)
    assert len(plain) == 1 and plain[0].n_tokens >= 1  # no vector and no coefficients: the unsteered baseline


def test_counts_and_layers_are_checked(smollm2, tiny):
    _, tokenizer = smollm2
    model, vector = tiny
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1, got 0"):
        generate(model, tokenizer, PROMPTS, max_new_tokens=0, progress=False)
    with pytest.raises(TypeError, match="batch_size must be an integer, got str"):
        generate(model, tokenizer, PROMPTS, batch_size="4", progress=False)
    with pytest.raises(ValueError, match=r"layers \[7\] do not exist: the model has layers 0..2"):
        generate(model, tokenizer, PROMPTS, vector, c_values=1.0, layers=[1, 7], progress=False)
    with pytest.raises(TypeError, match="each of layers must be an integer, got float"):
        generate(model, tokenizer, PROMPTS, vector, c_values=1.0, layers=[1.5], progress=False)


def test_activation_steering_checks_its_multiplier_and_layer(smollm2, tiny):
    _, tokenizer = smollm2
    model, _ = tiny
    vector = ActivationVector(torch.ones(3, 64), ActivationMetadata(model.name_or_alias, activation_fingerprint(model),
                                                                    -1, ["\n"], 1))
    with pytest.raises(ValueError, match="multiplier must be a finite number, got nan"):
        caa_generate(model, tokenizer, PROMPTS, vector, layer=1, multiplier=math.nan, max_new_tokens=2, progress=False)
    with pytest.raises(TypeError, match="layer must be an integer"):
        caa_generate(model, tokenizer, PROMPTS, vector, layer="1", multiplier=1.0, max_new_tokens=2, progress=False)


@pytest.mark.parametrize("fields, error, message", [
    ({"c_values": math.nan}, ValueError, "c_values must be a finite number"),
    ({"c_keys": "0"}, TypeError, "c_keys must be a number"),
    ({"limit": 0}, ValueError, "limit must be at least 1"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an integer"),
    ({"seeds": (1, 2)}, ValueError, "seeds are for sampling runs"),
    ({"do_sample": True, "seeds": ()}, ValueError, "at least one seed"),
    ({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\]"),
    ({"selection": "farthest"}, ValueError, "unknown selection 'farthest'"),
    ({"layers": (1, -1)}, ValueError, "each of layers must be at least 0"),
])
def test_a_run_config_checks_every_value_when_it_is_made(fields, error, message):
    with pytest.raises(error, match=message):
        EvalConfig("arc_challenge", "cache_steering", **fields)


def test_the_checks_themselves():
    assert finite_number("x", 3) == 3.0 and integer("n", 5, at_least=5) == 5
    assert layer_indices("layers", (2, 1, 2), 3) == [1, 2]
    with pytest.raises(TypeError, match="layers must be a collection"):
        layer_indices("layers", "12", 3)


def test_a_model_built_in_memory_has_a_name():
    assert model_id(tiny_model()) in ("tiny-random-llama", "unnamed LlamaForCausalLM")
    anonymous = tiny_model()
    del anonymous.name_or_alias
    assert model_id(anonymous) == "unnamed LlamaForCausalLM"
