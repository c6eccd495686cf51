"""The batched generation loop that every method of the library shares, and decoding of its output.

A method (plain generation, cache steering, activation steering, cache augmentation) only says how to generate
the new tokens of one left-padded batch; :func:`batched_completions` does the rest the same way for all of them:
prompts of similar lengths share a batch so that little of it is padding, every batch is checked against the model's
context before it runs, and the answers come back decoded, in the input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .batching import DECODING_MIN_EFFICIENCY, length_batches, token_lengths
from .checks import integer
from .progress import progress_bar
from .prompts import check_fits, encode

NewTokens = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Completion:
    """A generated answer: its text (special tokens removed) and how many tokens the model produced."""

    text: str
    n_tokens: int


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every token id that ends generation: the generation config's (one or a list) and the tokenizer's."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def decode_completions(
    tokenizer: PreTrainedTokenizerBase, new_tokens: torch.Tensor, eos_ids: set[int]
) -> list[Completion]:
    """Decode new tokens, counting each row up to and including its first EOS (the padding after it is not
    generated text)."""
    out = []
    for row in new_tokens.tolist():
        stop = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
        out.append(Completion(tokenizer.decode(row[:stop], skip_special_tokens=True), stop))
    return out


def generation_settings(
    tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, generate_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``model.generate`` keyword arguments: greedy unless the caller says otherwise, the token budget (at least one
    new token), and the tokenizer's padding id."""
    settings = {"do_sample": False, **generate_kwargs, "max_new_tokens": integer("max_new_tokens", max_new_tokens,
                                                                                 at_least=1)}
    settings.setdefault("pad_token_id", tokenizer.pad_token_id)
    return settings


def batched_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    new_tokens: NewTokens,
    *,
    extra_tokens: int,
    batch_size: int = 16,
    min_efficiency: float = DECODING_MIN_EFFICIENCY,
    progress: bool = True,
) -> list[Completion]:
    """Answer every prompt with ``new_tokens(input_ids, attention_mask)``, the generated ids of one left-padded
    batch: prompts sorted by length share batches of at most ``batch_size`` rows (:func:`batching.length_batches`;
    by default the fewest batches, see :data:`batching.DECODING_MIN_EFFICIENCY`), and come back decoded in the
    input order.

    ``extra_tokens`` is how far each prompt may grow (offset token, latents, new tokens); a batch that would
    outgrow the model's context is refused before it runs. ``new_tokens`` gets the batch on the model's device.
    Every generation method of the library runs here.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    if not prompts:
        raise ValueError("no prompts given")
    integer("batch_size", batch_size, at_least=1)
    batches = length_batches(token_lengths(tokenizer, prompts), max_rows=batch_size, extra=extra_tokens,
                             min_efficiency=min_efficiency)
    eos_ids = eos_token_ids(model, tokenizer)
    results: dict[int, Completion] = {}
    for indices in progress_bar(batches, desc="generating", unit="batch", enabled=progress):
        batch = encode(tokenizer, [prompts[i] for i in indices])  # checked on the CPU, then handed to the model
        check_fits(model, batch.attention_mask, extra_tokens)
        generated = new_tokens(batch.input_ids.to(model.device), batch.attention_mask.to(model.device))
        for i, completion in zip(indices, decode_completions(tokenizer, generated, eos_ids), strict=True):
            results[i] = completion
    return [results[i] for i in range(len(prompts))]
