"""One-shot cache steering: equivalences with plain ``generate``, where the edit lands, and bad inputs."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicSlidingWindowLayer

from cachesteer_lite import (
    PromptTooLongError,
    SteeringVector,
    append_offset,
    chat_prompt,
    encode,
    extract_steering_vector,
    generate,
    prefill,
    steered_cache,
    steered_generate,
)
from cachesteer_lite.core.generation import decode_completions, eos_token_ids
from cachesteer_lite.core.vectors import VectorMetadata, model_fingerprint

from conftest import tiny_model

QUESTIONS = [
    "What is the capital of France?",
    "Which gas do plants take in from the air to make food?\n\nChoices:\nA: oxygen\nB: carbon dioxide\nC: nitrogen",
    "Name a fruit.",
]


def random_vector(model, scale: float = 1.0, seed: int = 0) -> SteeringVector:
    """A vector of the model's shape with random directions: an edit that is sure to be non-zero."""
    fp = model_fingerprint(model)
    generator = torch.Generator().manual_seed(seed)
    shape = (fp["n_layers"], fp["n_kv_heads"], fp["head_dim"])
    meta = VectorMetadata(getattr(model, "name_or_alias", ""), fp, -1, ["\n"], 1)
    keys = torch.randn(shape, generator=generator) * scale
    return SteeringVector(keys, torch.randn(shape, generator=generator) * scale, meta)


def with_offset(tokenizer, prompts, offset="\n"):
    batch = encode(tokenizer, prompts)
    return append_offset(tokenizer, batch.input_ids, batch.attention_mask, offset)


@pytest.fixture(scope="module")
def smol_prompts(smollm2):
    return [chat_prompt(smollm2[1], q) for q in QUESTIONS]


@pytest.fixture(scope="module")
def smol_vector(smollm2):
    """A real vector: reasoning-style answers vs terse answers to two questions."""
    model, tokenizer = smollm2
    pairs = []
    for question, long, short in [
        ("How many legs do 3 spiders have?", "Each spider has 8 legs, and 3 x 8 = 24.", "24"),
        ("Is ice lighter than water?", "Ice is less dense than liquid water, so it floats.", "Yes"),
    ]:
        dialogues = []
        for answer in (long, short):
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer},
                        {"role": "user", "content": "Why is the sky blue?"}]
            dialogues.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        pairs.append(tuple(dialogues))
    return extract_steering_vector(model, tokenizer, pairs, progress=False)


def test_zero_coefficients_give_plain_generate_token_for_token(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    ids, mask = with_offset(tokenizer, smol_prompts)
    plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False)
    steered = steered_generate(model, ids, mask, smol_vector, c_keys=0.0, c_values=0.0,
                               max_new_tokens=24, do_sample=False)
    assert torch.equal(plain, steered)


def test_steering_changes_the_output(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    plain = generate(model, tokenizer, smol_prompts[:1], smol_vector, c_values=0.0, max_new_tokens=24, progress=False)
    steered = generate(model, tokenizer, smol_prompts[:1], smol_vector, c_values=8.0, max_new_tokens=24, progress=False)
    assert plain[0].text != steered[0].text


def test_edit_is_the_scaled_vector_at_the_last_cache_position_of_the_chosen_layers(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    ids, mask = with_offset(tokenizer, smol_prompts)
    reference = prefill(model, ids[:, :-1], mask[:, :-1])
    layers = [3, 7, 29]
    cache = steered_cache(model, ids, mask, smol_vector, c_keys=0.5, c_values=4.0, layers=layers)
    for layer_id, (old, new) in enumerate(zip(reference.layers, cache.layers, strict=True)):
        assert new.keys.shape[2] == ids.shape[1] - 1  # the offset token is not in the cache yet
        for name, coefficient, vector in (("keys", 0.5, smol_vector.keys), ("values", 4.0, smol_vector.values)):
            change = getattr(new, name) - getattr(old, name)
            if layer_id not in layers:
                assert change.abs().max() == 0, (layer_id, name)
                continue
            expected = (coefficient * vector[layer_id]).expand(len(smol_prompts), -1, -1)
            torch.testing.assert_close(change[:, :, -1, :], expected, atol=1e-5, rtol=1e-5)
            assert change[:, :, :-1, :].abs().max() == 0


def test_default_layers_skip_layer_zero(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    ids, mask = with_offset(tokenizer, smol_prompts[:1])
    reference = prefill(model, ids[:, :-1], mask[:, :-1])
    cache = steered_cache(model, ids, mask, smol_vector, c_keys=1.0, c_values=1.0)
    pairs = enumerate(zip(reference.layers, cache.layers, strict=True))
    changed = [i for i, (old, new) in pairs if not torch.equal(old.keys, new.keys)]
    assert changed == list(range(1, 30))


def test_batched_steered_generation_equals_one_by_one(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    kwargs = dict(c_values=6.0, max_new_tokens=24, progress=False)
    batched = generate(model, tokenizer, smol_prompts, smol_vector, batch_size=3, **kwargs)
    single = [generate(model, tokenizer, [p], smol_vector, batch_size=1, **kwargs)[0] for p in smol_prompts]
    assert batched == single


def test_unsteered_generate_counts_tokens_up_to_eos(smollm2, smol_prompts):
    model, tokenizer = smollm2
    [answer] = generate(model, tokenizer, smol_prompts[:1], max_new_tokens=40, progress=False)
    assert "Paris" in answer.text
    assert 2 < answer.n_tokens < 40  # stopped at EOS; the padding after it is not counted


@pytest.mark.slow
def test_sampling_is_reproducible_with_a_seed(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    kwargs = dict(c_values=4.0, max_new_tokens=16, do_sample=True, temperature=0.6, top_p=0.9, progress=False)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        runs.append(generate(model, tokenizer, smol_prompts, smol_vector, **kwargs))
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_gemma3_sliding_window_layers_are_steered(gemma3):
    model, tokenizer = gemma3
    # Longer than the 512-token window, so the sliding layers have already dropped the first tokens.
    prompt = "Question: " + " ".join(f"item {i}," for i in range(200)) + " which item comes after item 7?\nAnswer:"
    ids, mask = with_offset(tokenizer, [prompt])
    assert ids.shape[1] > model.config.sliding_window
    vector = random_vector(model, scale=0.5)
    reference = prefill(model, ids[:, :-1], mask[:, :-1])
    cache = steered_cache(model, ids, mask, vector, c_values=2.0)
    sliding = [i for i, layer in enumerate(cache.layers) if isinstance(layer, DynamicSlidingWindowLayer)]
    assert sliding and len(sliding) < len(cache.layers)
    for layer_id in range(1, len(cache.layers)):
        new, old = cache.layers[layer_id], reference.layers[layer_id]
        change = new.values - old.values
        torch.testing.assert_close(change[0, :, -1, :], 2.0 * vector.values[layer_id], atol=1e-5, rtol=1e-5)
        assert change[:, :, :-1, :].abs().max() == 0
    assert cache.layers[sliding[0]].values.shape[2] == model.config.sliding_window - 1
    plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    zero = steered_generate(model, ids, mask, vector, max_new_tokens=8, do_sample=False)
    assert torch.equal(plain, zero)
    steered = steered_generate(model, ids, mask, vector, c_values=8.0, max_new_tokens=8, do_sample=False)
    assert not torch.equal(plain, steered)


def test_tiny_sliding_window_model_matches_plain_generate_when_unsteered(smollm2):
    _, tokenizer = smollm2
    model = tiny_model("gemma3_text", layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                       sliding_window=4)
    prompts = ["one two three four five six seven", "one two"]
    ids, mask = with_offset(tokenizer, prompts)
    vector = random_vector(model)
    plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=2)
    zero = steered_generate(model, ids, mask, vector, max_new_tokens=6, do_sample=False, pad_token_id=2)
    assert torch.equal(plain, zero)


def test_bad_inputs_fail_clearly(smollm2, smol_prompts, smol_vector):
    model, tokenizer = smollm2
    with pytest.raises(TypeError, match="not one string"):
        generate(model, tokenizer, "a single string", smol_vector)
    with pytest.raises(ValueError, match="no prompts"):
        generate(model, tokenizer, [], smol_vector)
    with pytest.raises(ValueError, match="exactly one"):
        generate(model, tokenizer, smol_prompts, smol_vector, offset="two words")
    with pytest.raises(ValueError, match=r"layers \[30\] do not exist"):
        generate(model, tokenizer, smol_prompts, smol_vector, layers=[1, 30], progress=False)
    ids, mask = with_offset(tokenizer, smol_prompts)
    with pytest.raises(ValueError, match="builds its own cache"):
        steered_generate(model, ids, mask, smol_vector, past_key_values=prefill(model, ids, mask))
    with pytest.raises(ValueError, match="n_layers"):  # a vector of another model (3 layers, not 30)
        generate(tiny_model(), tokenizer, ["Hello"], smol_vector, max_new_tokens=4, progress=False)


def test_prompt_plus_generation_longer_than_the_context_is_refused(smollm2):
    _, tokenizer = smollm2
    model = tiny_model(max_position_embeddings=32)
    with pytest.raises(PromptTooLongError, match="context of 32 tokens"):
        generate(model, tokenizer, ["word " * 20], random_vector(model), max_new_tokens=16, progress=False)


def test_completions_stop_at_the_first_end_of_sequence_token(smollm2):
    """Token counts include the first EOS and never the padding after it; the text excludes special tokens."""
    model, tokenizer = smollm2
    eos = eos_token_ids(model, tokenizer)
    assert tokenizer.eos_token_id in eos
    hello = tokenizer(" Hello there", add_special_tokens=False).input_ids
    end, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ended = hello + [end] + [pad] * len(hello)  # finished early: EOS, then padding
    running = hello + hello + hello[:1]  # reached the length limit without EOS
    rows = torch.tensor([ended, running])
    first, second = decode_completions(tokenizer, rows, eos)
    assert (first.text, first.n_tokens) == (" Hello there", len(hello) + 1)
    assert second.n_tokens == rows.shape[1] and second.text.startswith(" Hello there Hello")


def test_offset_without_a_vector_is_the_papers_control(smollm2, smol_prompts, smol_vector):
    """``generate`` with an offset and no vector appends the token and edits nothing: the same tokens as the steered
    path at c = 0, and (for at least one of these prompts) not the same as the prompt without the token."""
    model, tokenizer = smollm2
    control = generate(model, tokenizer, smol_prompts, offset="\n", max_new_tokens=12, progress=False)
    zero_edit = generate(model, tokenizer, smol_prompts, smol_vector, max_new_tokens=12, progress=False)
    plain = generate(model, tokenizer, smol_prompts, max_new_tokens=12, progress=False)
    assert [c.text for c in control] == [z.text for z in zero_edit]
    assert [c.text for c in control] != [p.text for p in plain]
    with pytest.raises(ValueError, match="exactly one"):
        generate(model, tokenizer, smol_prompts, offset="two words", progress=False)
