"""Differentiable cache augmentation: exactly the frozen model when off, a decoder that never changes, batching,
training that resumes bit for bit, the held-out split, perplexity by ahead position, and bad inputs."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from cachesteer_lite import chat_prompt, encode, generate, prefill
from cachesteer_lite.__main__ import main
from cachesteer_lite.augmentation.augmenters import Coprocessor, PauseTokens
from cachesteer_lite.augmentation.generation import (
    augmented_cache,
    augmented_generate,
    augmented_inputs,
    augmented_sequences,
)
from cachesteer_lite.augmentation.lookahead import (
    AheadPerplexity,
    evaluation_samples,
    lookahead_logits,
    lookahead_losses,
    make_batch,
    paired_difference,
    perplexity_by_ahead_position,
    tokenize_texts,
)
from cachesteer_lite.augmentation.texts import split_documents, training_texts
from cachesteer_lite.augmentation.training import TrainConfig, latest_checkpoint, load_augmenter, train
from cachesteer_lite.tasks.traces import read_traces

from conftest import REPO, tiny_model

QUESTIONS = ["What is 2+3?", "Name a fruit that is red and sweet, please."]


@pytest.fixture(scope="module")
def split():
    return training_texts()


@pytest.fixture(scope="module")
def texts(split):
    """Six real GSM8K training documents."""
    return [document.text for document in split.train if document.source == "gsm8k"][:6]


def nudged(augmenter, seed: int = 0, scale: float = 0.05):
    """Move every trainable tensor a little, so that no check passes only because LoRA's B is still zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in augmenter.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * scale)
    return augmenter


def switched_off(augmenter):
    augmenter.enabled = False
    return augmenter


def test_no_latents_or_switched_off_generate_exactly_the_plain_model(smollm2):
    model, tokenizer = smollm2
    prompts = [chat_prompt(tokenizer, q) for q in QUESTIONS]
    batch = encode(tokenizer, prompts)
    ids, mask = batch.input_ids, batch.attention_mask
    options = dict(max_new_tokens=8, do_sample=False)
    plain = model.generate(**batch, **options)[:, ids.shape[1] :]
    for augmenter in (Coprocessor(model, 0), switched_off(nudged(Coprocessor(model, 2)))):
        assert torch.equal(augmented_sequences(model, augmenter, ids, mask, **options), plain)
    assert not torch.equal(augmented_sequences(model, nudged(Coprocessor(model, 2)), ids, mask, **options), plain)
    expected = generate(model, tokenizer, prompts, max_new_tokens=8, progress=False)
    assert augmented_generate(model, tokenizer, None, prompts, max_new_tokens=8, progress=False) == expected


def test_no_latents_give_the_plain_models_lookahead_logits(smollm2, texts):
    model, tokenizer = smollm2
    tokens = tokenize_texts(tokenizer, texts[:1], 64)
    batch = make_batch(tokens, [(0, 20)], 4, "cpu")
    with torch.no_grad():
        full = model(torch.tensor([tokens[0][:23]])).logits[:, -4:]
        plain = lookahead_logits(model, None, batch)
        assert_close(plain, full, atol=1e-4, rtol=1e-4)
        for augmenter in (Coprocessor(model, 0), switched_off(nudged(Coprocessor(model, 2))),
                          switched_off(nudged(PauseTokens(model, 2)))):
            assert torch.equal(lookahead_logits(model, augmenter, batch), plain)


def test_coprocessor_starts_as_the_decoder_and_leaves_its_cache_alone(smollm2):
    model, tokenizer = smollm2
    coprocessor = Coprocessor(model, 3)
    batch = encode(tokenizer, [chat_prompt(tokenizer, q) for q in QUESTIONS])
    ids, mask = batch.input_ids, batch.attention_mask
    cache = prefill(model, ids, mask)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    with torch.no_grad():
        hidden = coprocessor.hidden_states(cache, mask)
        reference = model.get_decoder()(
            inputs_embeds=coprocessor.soft_tokens.expand(2, -1, -1),
            attention_mask=torch.cat([mask, torch.ones(2, 3, dtype=mask.dtype)], 1),
            position_ids=mask.sum(-1, keepdim=True) + torch.arange(3),
            past_key_values=copy.deepcopy(cache),
            use_cache=True,
        ).last_hidden_state
        latents = coprocessor.latents(model, cache, mask)
    assert torch.equal(hidden, reference)  # LoRA's B starts at zero: C computes exactly D's function
    assert_close(latents.norm(dim=-1), torch.full((2, 3), coprocessor.latent_norm))
    assert cache.get_seq_length() == ids.shape[1]
    assert all(torch.equal(layer.keys, k) and torch.equal(layer.values, v)
               for layer, (k, v) in zip(cache.layers, before, strict=True))
    # The frozen weights are shared with the decoder, not copied; only adapters, soft tokens and the gain train.
    assert coprocessor.decoder.layers[0].self_attn.q_proj.base.weight is model.model.layers[0].self_attn.q_proj.weight
    assert coprocessor.n_trainable == 30 * 8 * (2 * 1152 + 2 * 768 + 3 * 2112) + 3 * 576 + 1


@pytest.mark.parametrize("kind", ["coprocessor", "pause"])
def test_batched_lookahead_equals_one_by_one(smollm2, texts, kind):
    model, tokenizer = smollm2
    augmenter = nudged(Coprocessor(model, 2) if kind == "coprocessor" else PauseTokens(model, 2))
    tokens = tokenize_texts(tokenizer, texts[:3], 64)
    samples = [(0, 30), (1, 9), (2, 17)]
    batch = make_batch(tokens, samples, 3, "cpu")
    assert batch.prefix_mask.sum(-1).tolist() == [30, 9, 17]
    assert batch.ahead_ids.tolist() == [tokens[t][p : p + 3] for t, p in samples]
    with torch.no_grad():
        batched = lookahead_logits(model, augmenter, batch)
        single = torch.cat([lookahead_logits(model, augmenter, make_batch(tokens, [s], 3, "cpu")) for s in samples])
    assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_gradients_reach_only_the_augmenter(smollm2, texts):
    model, tokenizer = smollm2
    batch = make_batch(tokenize_texts(tokenizer, texts[:2], 32), [(0, 12), (1, 20)], 2, "cpu")
    coprocessor, pause = Coprocessor(model, 2), PauseTokens(model, 2)
    for augmenter in (coprocessor, pause):
        lookahead_losses(model, augmenter, batch).mean().backward()
        assert all(p.grad is None and not p.requires_grad for p in model.parameters())
        assert all(p.grad is not None for p in augmenter.parameters() if p.requires_grad)
    assert pause.embeddings.grad.abs().sum() > 0 and coprocessor.soft_tokens.grad.abs().sum() > 0
    assert coprocessor.decoder.layers[5].mlp.down_proj.lora_b.grad.abs().sum() > 0


def test_training_moves_the_augmenter_and_never_the_decoder(smollm2, texts, tmp_path):
    model, tokenizer = smollm2
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    config = TrainConfig(n_latents=2, n_ahead=2, steps=2, batch_size=2, max_tokens=32, lr=1e-2)
    start = Coprocessor(model, 2, seed=config.seed).trainable_state()
    trained = train(model, tokenizer, texts, config, tmp_path, progress=False).augmenter.trainable_state()
    assert start.keys() == trained.keys() and len(start) == 30 * 7 * 2 + 2
    assert all(not torch.equal(start[name], trained[name]) for name in start)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize("kind", ["coprocessor", "pause"])
def test_resuming_ends_bit_for_bit_where_an_uninterrupted_run_ends(smollm2, texts, tmp_path, kind):
    tokenizer = smollm2[1]
    model = tiny_model()
    config = TrainConfig(kind=kind, n_latents=2, n_ahead=3, steps=4, batch_size=2, max_tokens=40, save_every=1)
    whole = train(model, tokenizer, texts, config, tmp_path / "whole", progress=False)
    train(model, tokenizer, texts, replace(config, steps=2), tmp_path / "resumed", progress=False)
    assert latest_checkpoint(tmp_path / "resumed").name == "checkpoint-000002"
    resumed = train(model, tokenizer, texts, config, tmp_path / "resumed", progress=False)
    assert resumed.losses == whole.losses and len(whole.losses) == 4
    expected = whole.augmenter.trainable_state()
    for state in (resumed.augmenter.trainable_state(), load_augmenter(model, tmp_path / "resumed").trainable_state()):
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[name], expected[name]) for name in expected)
    assert [path.name for path in (tmp_path / "resumed").iterdir()] == ["checkpoint-000004"]  # only the latest


def test_full_fine_tuning_trains_a_real_copy(smollm2, texts, tmp_path):
    tokenizer = smollm2[1]
    model = tiny_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    coprocessor = Coprocessor(model, 2, lora_rank=None)
    embedding = model.get_input_embeddings().weight
    assert coprocessor.decoder.get_input_embeddings().weight is embedding  # C reads only soft tokens
    assert coprocessor.n_trainable == sum(p.numel() for p in model.model.parameters()) - embedding.numel() + 2 * 64 + 1
    config = TrainConfig(n_latents=2, n_ahead=2, lora_rank=None, steps=2, batch_size=2, max_tokens=32, lr=1e-2)
    trained = train(model, tokenizer, texts, config, tmp_path, progress=False).augmenter
    assert not torch.equal(trained.decoder.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_sliding_window_models_are_augmented(smollm2):
    tokenizer = smollm2[1]
    model = tiny_model("gemma3_text", layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                       sliding_window=4)
    batch = encode(tokenizer, ["one two three four five six seven", "one two"])
    options = dict(max_new_tokens=6, do_sample=False, pad_token_id=2)
    plain = model.generate(**batch, **options)[:, batch.input_ids.shape[1] :]
    assert torch.equal(augmented_sequences(model, Coprocessor(model, 0), batch.input_ids, batch.attention_mask,
                                           **options), plain)
    coprocessor = nudged(Coprocessor(model, 3), scale=0.5)
    assert augmented_sequences(model, coprocessor, batch.input_ids, batch.attention_mask, **options).shape == (2, 6)
    tokens = tokenize_texts(tokenizer, ["one two three four five six seven eight nine ten", "a b c d e f"], 32)
    samples = [(0, 7), (1, 3)]
    with torch.no_grad():
        batched = lookahead_logits(model, coprocessor, make_batch(tokens, samples, 2, "cpu"))
        single = torch.cat([lookahead_logits(model, coprocessor, make_batch(tokens, [s], 2, "cpu")) for s in samples])
    assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_training_text_is_split_once_and_for_all(split):
    train_keys = {(d.source, d.index) for d in split.train}
    held_keys = {(d.source, d.index) for d in split.held_out}
    assert not train_keys & held_keys
    assert not {d.text for d in split.train} & {d.text for d in split.held_out}
    assert {d.source for d in split.held_out} == {"gsm8k", "arc_challenge", "csqa", "piqa"}
    assert sum(d.source == "gsm8k" for d in split.held_out) == 100  # 5% of the 2000 local train items
    again = training_texts()
    assert again == split and training_texts(seed=1).held_out != split.held_out
    gsm8k = [d.text for d in split.train + split.held_out if d.source == "gsm8k"]
    assert not any("<<" in text or "####" in text for text in gsm8k)
    assert all(text.startswith("Question: ") and "\nAnswer: " in text for text in gsm8k)
    trace = read_traces(REPO / "data" / "traces" / "piqa.jsonl")[0]
    documents = [d for d in split.train + split.held_out if (d.source, d.index) == ("piqa", trace.index)]
    assert len(documents) == 1 and trace.reasoning in documents[0].text
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_documents(split.train, held_out_fraction=1.0)


def test_perplexity_by_ahead_position_averages_the_lookahead_loss(smollm2, texts):
    model, tokenizer = smollm2
    result = perplexity_by_ahead_position(model, tokenizer, texts[:2], None, n_ahead=3, positions_per_text=2,
                                          max_tokens=48, batch_size=3, progress=False)
    assert result.n_samples == 4 and len(result.loss) == 3
    assert result.perplexity == [math.exp(loss) for loss in result.loss]
    tokens = tokenize_texts(tokenizer, texts[:2], 48)
    samples = evaluation_samples([len(t) for t in tokens], 3, 8, 2)
    with torch.no_grad():
        manual = lookahead_losses(model, None, make_batch(tokens, samples, 3, "cpu"))
    assert_close(torch.tensor(result.loss, dtype=torch.float64), manual.mean(0).double(), atol=1e-5, rtol=1e-5)
    # Per-sample losses come back in sample order (batching sorts by prefix length), for paired comparisons.
    assert_close(torch.tensor(result.sample_loss, dtype=torch.float64), manual.mean(1).double(), atol=1e-5, rtol=1e-5)
    assert result.mean_loss == pytest.approx(sum(result.loss) / 3)


def test_paired_difference_compares_the_same_samples():
    plain = AheadPerplexity([2.0, 3.0], 4, [2.0, 2.5, 3.0, 2.5])
    better = AheadPerplexity([1.5, 2.5], 4, [1.5, 2.0, 2.5, 2.0])
    same = paired_difference(plain, plain)
    assert same["mean"] == 0 and same["ci95"] == [0, 0] and same["share_better"] == 0
    shifted = paired_difference(better, plain)
    assert shifted["mean"] == pytest.approx(-0.5) and shifted["ci95"] == pytest.approx([-0.5, -0.5])
    assert shifted["share_better"] == 1
    mixed = paired_difference(AheadPerplexity([0, 0], 4, [1.0, 3.0, 2.0, 3.5]), plain)
    assert mixed["ci95"][0] < mixed["mean"] < mixed["ci95"][1] and mixed["share_better"] == 0.5
    with pytest.raises(ValueError, match="different samples"):
        paired_difference(AheadPerplexity([1.0], 2, [1.0, 1.0]), plain)


def test_command_line_trains_and_scores_against_the_plain_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["augmentation", "train", "--out", str(run), "--n-latents", "1", "--n-ahead", "2", "--steps", "1",
                 "--batch-size", "1", "--threads", "1"]) == 0
    assert latest_checkpoint(run).name == "checkpoint-000001"
    assert main(["augmentation", "perplexity", str(run), "--limit", "2", "--positions", "1",
                 "--json", str(tmp_path / "p.json")]) == 0
    output = capsys.readouterr().out
    assert "plain model" in output and "coprocessor run @1" in output and "ppl@2" in output
    stored = json.loads((tmp_path / "p.json").read_text())
    assert [row["n_latents"] for row in stored["rows"]] == [0, 1] and stored["settings"]["held_out_texts"] == 2
    assert "difference_vs_plain" in stored["rows"][1] and stored["versions"]["torch"] and stored["wall_time_s"] > 0


def test_bad_inputs_fail_clearly(smollm2, texts, tmp_path):
    model, tokenizer = smollm2
    with pytest.raises(ValueError, match="n_latents must be an integer"):
        Coprocessor(model, -1)
    with pytest.raises(ValueError, match="lora_rank"):
        Coprocessor(model, 2, lora_rank=0)
    with pytest.raises(ValueError, match="unknown kind"):
        TrainConfig(kind="prefix")
    with pytest.raises(ValueError, match="n_latents must be at least 1"):
        TrainConfig(n_latents=0)
    with pytest.raises(ValueError, match="leaves no room"):
        TrainConfig(max_tokens=10)
    with pytest.raises(ValueError, match="no text has"):
        train(model, tokenizer, ["Too short."], TrainConfig(), tmp_path / "short", progress=False)
    with pytest.raises(TypeError, match="not one string"):
        augmented_generate(model, tokenizer, None, "a single prompt")
    with pytest.raises(ValueError, match="no prompts"):
        augmented_generate(model, tokenizer, None, [])
    batch = encode(tokenizer, ["Hello there"])
    with pytest.raises(ValueError, match="builds its own"):
        augmented_sequences(model, None, batch.input_ids, batch.attention_mask, past_key_values=None)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_augmenter(model, tmp_path)
    tiny = tiny_model()
    config = TrainConfig(n_latents=1, n_ahead=2, steps=1, batch_size=1, max_tokens=24)
    train(tiny, tokenizer, texts, config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="other n_latents"):
        train(tiny, tokenizer, texts, replace(config, n_latents=2, steps=2), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="other texts_sha256"):
        train(tiny, tokenizer, texts[:3], replace(config, steps=2), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        load_augmenter(model, tmp_path / "run")
    with pytest.raises(ValueError, match="do not fit"):
        Coprocessor(tiny, 1).load_trainable_state({"soft_tokens": torch.zeros(1, 64)})


@pytest.mark.slow
def test_augmented_cache_holds_the_prompt_then_every_latent(smollm2, texts):
    """The latents' cache entries come after the prompt's, which they leave unchanged; the first N_L - 1 are those
    generation starts from; with no latents it is the prompt's cache."""
    model, tokenizer = smollm2
    batch = encode(tokenizer, texts[:2])
    length = batch.input_ids.shape[1]
    augmenter = Coprocessor(model, 3)
    cache = augmented_cache(model, augmenter, batch.input_ids, batch.attention_mask)
    plain = prefill(model, batch.input_ids, batch.attention_mask)
    started, _, _ = augmented_inputs(model, augmenter, batch.input_ids, batch.attention_mask)
    for layer, reference, generation in zip(cache.layers, plain.layers, started.layers, strict=True):
        assert layer.values.shape[2] == length + 3
        assert_close(layer.values[:, :, :length], reference.values)
        assert_close(layer.values[:, :, : length + 2], generation.values)
    unaugmented = augmented_cache(model, None, batch.input_ids, batch.attention_mask)
    assert all(torch.equal(a.values, b.values) for a, b in zip(unaugmented.layers, plain.layers, strict=True))
