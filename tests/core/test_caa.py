"""Activation steering (CAA): extraction, where each mode adds the vector, hook hygiene, and bad inputs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from cachesteer_lite import (
    ActivationVector,
    Demonstration,
    IncompatibleVectorError,
    SteeringVector,
    activation_steering,
    caa_generate,
    chat_prompt,
    contrastive_pair,
    encode,
    extract_activation_vector,
    generate,
)
from cachesteer_lite.core.caa import MODES, ActivationMetadata, _steering_hook, activation_fingerprint, decoder_blocks
from cachesteer_lite.core.vectors import VectorMetadata
from cachesteer_lite.tasks.traces import read_traces

from conftest import REPO, tiny_model

QUESTIONS = [
    "What is the capital of France?",
    "Which gas do plants take in from the air to make food?\n\nChoices:\nA: oxygen\nB: carbon dioxide\nC: nitrogen",
    "Name a fruit.",
]
LAYER = 14  # inside the paper's SmolLM2 search range (13-19)


def random_vector(model) -> ActivationVector:
    """A vector of the model's shape with random directions: an edit that is sure to be non-zero."""
    fp = activation_fingerprint(model)
    directions = torch.randn((fp["n_layers"], fp["hidden_size"]), generator=torch.Generator().manual_seed(0))
    return ActivationVector(directions, ActivationMetadata(model.name_or_alias, fp, -1, ["\n"], 1))


def hooks_of(model) -> list[dict]:
    """Every decoder block's forward hooks (transformers' own output-capturing hooks included)."""
    return [dict(block._forward_hooks) for block in decoder_blocks(model)]


def decode_step_edit(model, batch, vector, multiplier, mode, layer=LAYER) -> torch.Tensor:
    """What steering adds to block ``layer``'s output at one decoding step: the same steered prefill cache is
    extended by one token with the hook and without it."""
    with activation_steering(model, vector, layer, multiplier, mode):
        cache = model(**batch, use_cache=True).past_key_values
    token = torch.full_like(batch.input_ids[:, :1], 11)
    mask = torch.cat([batch.attention_mask, torch.ones_like(token)], dim=1)

    def block_output(cache):
        out = model(input_ids=token, attention_mask=mask, past_key_values=cache, output_hidden_states=True)
        return out.hidden_states[layer + 1][:, -1]

    with activation_steering(model, vector, layer, multiplier, mode):
        steered = block_output(copy.deepcopy(cache))
    return steered - block_output(copy.deepcopy(cache))


@pytest.fixture(autouse=True)
def no_grad():
    """Forward passes in these tests need no autograd graph."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def arc_pairs(smollm2):
    """Four real contrastive pairs: ARC train questions with one hand-written trace demonstration each."""
    _, tokenizer = smollm2
    traces = read_traces(REPO / "data" / "traces" / "arc_challenge.jsonl")
    demos = [Demonstration(t.question, t.reasoning, t.answer) for t in traces[:5]]
    return [contrastive_pair(tokenizer, [demos[i + 1]], demos[i].question) for i in range(4)]


@pytest.fixture(scope="module")
def arc_vector(smollm2, arc_pairs):
    model, tokenizer = smollm2
    return extract_activation_vector(model, tokenizer, arc_pairs, batch_size=3, progress=False)


@pytest.fixture(scope="module")
def batch(smollm2):
    """The three questions as one left-padded batch of chat prompts."""
    _, tokenizer = smollm2
    return encode(tokenizer, [chat_prompt(tokenizer, q) for q in QUESTIONS])


def test_vector_shape_and_metadata(arc_vector):
    assert arc_vector.directions.shape == (30, 576) and arc_vector.directions.dtype == torch.float32
    meta = arc_vector.metadata
    assert meta.kind == "activation" and meta.model_id == "smollm2-135m-instruct"
    assert meta.fingerprint == {"architecture": "LlamaForCausalLM", "n_layers": 30, "hidden_size": 576}
    assert meta.n_pairs == 4 and meta.token_offset == -1 and meta.token_texts == ["\n"]
    assert arc_vector.directions[LAYER].norm() > 0


@pytest.mark.slow
def test_batched_extraction_equals_one_by_one(smollm2, arc_pairs, arc_vector):
    model, tokenizer = smollm2
    one_by_one = extract_activation_vector(model, tokenizer, arc_pairs, batch_size=1, progress=False)
    torch.testing.assert_close(arc_vector.directions, one_by_one.directions, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_vector_is_the_mean_of_block_output_differences_by_hand(smollm2, arc_pairs):
    model, tokenizer = smollm2
    pairs = arc_pairs[:2]
    texts = [text for pair in pairs for text in pair]  # positive, negative, positive, negative
    last_outputs = []  # hidden_states[-1] has the final norm applied, so the last block is read by a hook
    handle = decoder_blocks(model)[-1].register_forward_hook(lambda module, args, out: last_outputs.append(out[0, -1]))
    try:
        states = [model(**encode(tokenizer, [t]), use_cache=False, output_hidden_states=True).hidden_states
                  for t in texts]
    finally:
        handle.remove()
    outputs = torch.stack([torch.stack([hs[layer + 1][0, -1] for layer in range(29)] + [last])
                           for hs, last in zip(states, last_outputs, strict=True)])  # [text, layer, hidden]
    vector = extract_activation_vector(model, tokenizer, pairs, batch_size=1, progress=False)  # padding: other test
    torch.testing.assert_close(vector.directions, (outputs[0::2] - outputs[1::2]).mean(0), atol=1e-4, rtol=1e-4)
    for hs, last in zip(states, last_outputs, strict=True):
        torch.testing.assert_close(model.model.norm(last), hs[-1][0, -1])


def test_save_and_load_round_trip_bit_exactly(arc_vector, tmp_path):
    tensors_path, meta_path = arc_vector.save(tmp_path / "caa")
    assert tensors_path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    loaded = ActivationVector.load(meta_path)
    assert torch.equal(loaded.directions, arc_vector.directions) and loaded.metadata == arc_vector.metadata
    assert json.loads(meta_path.read_text())["kind"] == "activation"
    shape = (2, 1, 4)
    kv_meta = VectorMetadata("m", {"n_layers": 2, "n_kv_heads": 1, "head_dim": 4}, -1, ["\n"], 1)
    SteeringVector(torch.zeros(shape), torch.zeros(shape), kv_meta).save(tmp_path / "kv")
    with pytest.raises(ValueError, match="not an activation vector"):
        ActivationVector.load(tmp_path / "kv")


def test_vector_of_another_hidden_size_is_refused(smollm2):
    model, tokenizer = smollm2
    tiny = tiny_model(num_hidden_layers=30)  # same layer count, hidden size 64
    vector = extract_activation_vector(tiny, tokenizer, [("Yes, because", "No")], progress=False)
    with pytest.raises(IncompatibleVectorError, match=r"'hidden_size': 64.*'hidden_size': 576"):
        with activation_steering(model, vector, LAYER, 1.0):
            pass
    with pytest.raises(IncompatibleVectorError, match="hidden_size"):
        caa_generate(model, tokenizer, ["Hi"], vector, layer=LAYER, multiplier=1.0, progress=False)


def test_same_shapes_but_other_model_name_only_warns(smollm2, arc_vector):
    model, _ = smollm2
    renamed = ActivationVector(arc_vector.directions, ActivationMetadata(**{**arc_vector.metadata.__dict__,
                                                                           "model_id": "other"}))
    with pytest.warns(UserWarning, match="extracted from 'other'"):
        with activation_steering(model, renamed, LAYER, 1.0):
            pass


@pytest.mark.slow
def test_zero_multiplier_gives_plain_generate_in_every_mode(smollm2, batch, arc_vector):
    model, _ = smollm2
    kwargs = dict(max_new_tokens=6, do_sample=False)
    plain = model.generate(**batch, **kwargs)
    for mode in MODES:
        with activation_steering(model, arc_vector, LAYER, 0.0, mode):
            steered = model.generate(**batch, use_cache=mode != "paper", **kwargs)
        assert torch.equal(plain, steered), mode


@pytest.mark.parametrize("mode", MODES)
def test_a_fresh_pass_is_steered_at_its_last_position_only(smollm2, batch, arc_vector, mode):
    model, _ = smollm2
    plain = model(**batch, use_cache=True, output_hidden_states=True)
    with activation_steering(model, arc_vector, LAYER, 8.0, mode):
        steered = model(**batch, use_cache=True, output_hidden_states=True)
    for layer in range(LAYER + 1):  # embeddings and the blocks before the steered one are untouched
        assert torch.equal(steered.hidden_states[layer], plain.hidden_states[layer])
    edit = steered.hidden_states[LAYER + 1] - plain.hidden_states[LAYER + 1]
    expected = (8.0 * arc_vector.directions[LAYER]).expand(len(QUESTIONS), -1)
    torch.testing.assert_close(edit[:, -1], expected, atol=1e-4, rtol=1e-4)
    assert edit[:, :-1].abs().max() == 0
    assert torch.equal(steered.logits[:, :-1], plain.logits[:, :-1])  # earlier positions bit-identical
    assert (steered.logits[:, -1] - plain.logits[:, -1]).abs().max() > 1.0


def test_cached_mode_steers_each_decoded_token_and_one_shot_does_not(smollm2, batch, arc_vector):
    model, _ = smollm2
    cached = decode_step_edit(model, batch, arc_vector, 8.0, "cached")
    expected = (8.0 * arc_vector.directions[LAYER]).expand(len(QUESTIONS), -1)
    torch.testing.assert_close(cached, expected, atol=1e-4, rtol=1e-4)
    one_shot = decode_step_edit(model, batch, arc_vector, 8.0, "one_shot")
    assert one_shot.abs().max() == 0


@pytest.mark.slow
def test_modes_share_the_prefill_edit_and_differ_afterwards(smollm2, batch, arc_vector):
    model, _ = smollm2
    kwargs = dict(max_new_tokens=3, do_sample=False, output_scores=True, return_dict_in_generate=True)
    runs = {}
    for mode in MODES:
        with activation_steering(model, arc_vector, LAYER, 4.0, mode):
            runs[mode] = model.generate(**batch, use_cache=mode != "paper", **kwargs)
    prompt_len = batch.input_ids.shape[1]
    for mode in ("paper", "one_shot"):  # the same prefill edit: the same first token
        torch.testing.assert_close(runs[mode].scores[0], runs["cached"].scores[0], atol=1e-4, rtol=1e-4)
        assert torch.equal(runs[mode].sequences[:, prompt_len], runs["cached"].sequences[:, prompt_len])
        # Paper mode recomputes the prompt unsteered; one-shot does not steer the new token: both differ from cached.
        assert (runs[mode].scores[1] - runs["cached"].scores[1]).abs().max() > 0.5, mode


def test_hooks_are_removed_when_the_body_raises(smollm2, batch, arc_vector):
    model, _ = smollm2
    before = hooks_of(model)
    plain = model(**batch).logits
    with pytest.raises(RuntimeError, match="boom"):
        with activation_steering(model, arc_vector, LAYER, 8.0, "cached"):
            assert len(hooks_of(model)[LAYER]) == len(before[LAYER]) + 1
            raise RuntimeError("boom")
    assert hooks_of(model) == before
    assert torch.equal(model(**batch).logits, plain)


def test_a_pass_that_contradicts_the_mode_is_refused(smollm2, batch, arc_vector):
    model, _ = smollm2
    before = hooks_of(model)
    with pytest.raises(RuntimeError, match="use_cache=False"):
        with activation_steering(model, arc_vector, LAYER, 1.0, "paper"):
            model.generate(**batch, max_new_tokens=2, do_sample=False, use_cache=True)
    for mode in ("cached", "one_shot"):
        with pytest.raises(RuntimeError, match="use_cache=True"):
            with activation_steering(model, arc_vector, LAYER, 1.0, mode):
                model(**batch, use_cache=False)
    assert hooks_of(model) == before


def test_caa_generate_sets_use_cache_from_the_mode(smollm2, arc_vector, monkeypatch):
    model, tokenizer = smollm2
    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append(kwargs["use_cache"])
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    for mode in MODES:
        calls.clear()
        answers = caa_generate(model, tokenizer, ["Hi", "Name a colour."], arc_vector, layer=LAYER, multiplier=2.0,
                               mode=mode, max_new_tokens=2, batch_size=1, progress=False)
        assert calls == [mode != "paper"] * 2 and all(a.n_tokens <= 2 for a in answers)


def test_caa_generate_batched_equals_one_by_one_and_zero_is_unsteered(smollm2, arc_vector):
    model, tokenizer = smollm2
    prompts = [chat_prompt(tokenizer, q) for q in QUESTIONS]
    kwargs = dict(layer=LAYER, mode="cached", max_new_tokens=6, progress=False)
    batched = caa_generate(model, tokenizer, prompts, arc_vector, multiplier=4.0, batch_size=2, **kwargs)
    single = [caa_generate(model, tokenizer, [p], arc_vector, multiplier=4.0, **kwargs)[0] for p in prompts]
    assert batched == single
    zero = caa_generate(model, tokenizer, prompts, arc_vector, multiplier=0.0, **kwargs)
    assert zero == generate(model, tokenizer, prompts, max_new_tokens=6, progress=False)
    assert zero != batched


@pytest.mark.parametrize(
    "model_type, overrides",
    [("gpt2", {}),  # blocks named `h`, the cache passed positionally
     ("gemma3_text", {"layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                      "sliding_window": 4})],
)
def test_other_architectures(smollm2, model_type, overrides):
    _, tokenizer = smollm2
    model = tiny_model(model_type, **overrides)
    vector = random_vector(model)
    batch = encode(tokenizer, ["one two three four five six seven", "one two"])
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=2)
    plain = model.generate(**batch, **kwargs)
    for mode in MODES:
        with activation_steering(model, vector, 1, 0.0, mode):
            assert torch.equal(model.generate(**batch, use_cache=mode != "paper", **kwargs), plain), mode
    cached = decode_step_edit(model, batch, vector, 2.0, "cached", layer=1)
    torch.testing.assert_close(cached, (2.0 * vector.directions[1]).expand(2, -1), atol=1e-5, rtol=1e-5)
    assert decode_step_edit(model, batch, vector, 2.0, "one_shot", layer=1).abs().max() == 0


def test_tuple_outputs_of_older_blocks_are_steered_in_their_first_item():
    hidden, extra = torch.zeros(2, 3, 4), torch.zeros(2)
    _steering_hook("paper", 0, torch.ones(4))(nn.Identity(), (hidden,), {}, (hidden, extra))
    assert torch.equal(hidden[:, -1], torch.ones(2, 4)) and hidden[:, :-1].abs().max() == 0
    assert extra.abs().max() == 0


def test_bad_inputs_fail_clearly(smollm2, arc_vector):
    model, tokenizer = smollm2
    with pytest.raises(ValueError, match="unknown mode 'continuous'"):
        with activation_steering(model, arc_vector, LAYER, 1.0, "continuous"):
            pass
    for layer in (30, -1):
        with pytest.raises(ValueError, match=rf"layer {layer} does not exist: the model has layers 0..29"):
            caa_generate(model, tokenizer, ["Hi"], arc_vector, layer=layer, multiplier=1.0, progress=False)
    with pytest.raises(ValueError, match="no contrastive pairs"):
        extract_activation_vector(model, tokenizer, [], progress=False)
    with pytest.raises(ValueError, match="must be negative"):
        extract_activation_vector(model, tokenizer, [("a", "b")], token_offset=0, progress=False)
    with pytest.raises(ValueError, match="sets 'use_cache' from the mode"):
        caa_generate(model, tokenizer, ["Hi"], arc_vector, layer=LAYER, multiplier=1.0, use_cache=True)
    with pytest.raises(TypeError, match="not one string"):
        caa_generate(model, tokenizer, "Hi", arc_vector, layer=LAYER, multiplier=1.0)
    with pytest.raises(ValueError, match="no prompts"):
        caa_generate(model, tokenizer, [], arc_vector, layer=LAYER, multiplier=1.0)
