"""One-shot KV cache steering, as the paper applies it (paper-reference section 2.5).

1. Append an offset token ("\\n"; " " for GSM8K) to the prompt.
2. Prefill the cache with everything but that token: the cache's last entry is then the last prompt token,
   the very token the vector was read from.
3. Add ``c_keys * k`` and ``c_values * v`` once, at that last position, in the chosen layers (default: all but
   layer 0, where the value difference is zero when both prompts end in the same token).
4. Call the standard ``model.generate``: it feeds the offset token first, and nothing else is changed, so
   decoding costs exactly what plain decoding costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .cache import add_at_position, prefill
from .prompts import check_fits, encode, longest_first
from .vectors import SteeringVector

DEFAULT_OFFSET = "\n"


def default_layers(n_layers: int) -> list[int]:
    """Every layer but layer 0 (the paper's ``layers_ids=[1]``)."""
    return list(range(1, n_layers))


def _check_layers(layers: Iterable[int], n_layers: int) -> list[int]:
    layers = sorted(set(layers))
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layers {bad} do not exist: the model has layers 0..{n_layers - 1}")
    return layers


def offset_token_id(tokenizer: PreTrainedTokenizerBase, offset: str) -> int:
    """The id of the offset token, which must be a single token for this tokenizer."""
    ids = tokenizer(offset, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"offset {offset!r} is {len(ids)} tokens for this tokenizer; it must be exactly one")
    return ids[0]


def steered_cache(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    vector: SteeringVector,
    *,
    c_keys: float = 0.0,
    c_values: float = 0.0,
    layers: Iterable[int] | None = None,
) -> DynamicCache:
    """The cache of every token but the last (the offset token), with the vector added at its last position."""
    vector.check_compatible(model)
    n_layers = vector.keys.shape[0]
    layers = default_layers(n_layers) if layers is None else _check_layers(layers, n_layers)
    cache = prefill(model, input_ids[:, :-1], attention_mask[:, :-1])
    add_at_position(cache, layers, c_keys * vector.keys.to(model.device), c_values * vector.values.to(model.device))
    return cache


@torch.no_grad()
def steered_generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    vector: SteeringVector,
    *,
    c_keys: float = 0.0,
    c_values: float = 0.0,
    layers: Iterable[int] | None = None,
    **generate_kwargs,
) -> torch.Tensor:
    """``model.generate`` with a one-shot cache edit; the same inputs and outputs as ``generate``.

    ``input_ids`` is a left-padded batch whose last column is the offset token. Returns the full
    sequences, as ``generate`` does. ``generate_kwargs`` go to ``generate`` unchanged (greedy or sampling).
    The steered cache is built afresh for every call: ``generate`` extends it in place, so it is never reused.
    """
    for own in ("past_key_values", "cache_implementation"):
        if own in generate_kwargs:
            raise ValueError(f"cache steering builds its own cache; do not pass {own!r}")
    cache = steered_cache(
        model, input_ids, attention_mask, vector, c_keys=c_keys, c_values=c_values, layers=layers
    )
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **generate_kwargs)


@dataclass(frozen=True)
class Completion:
    """A generated answer: its text (special tokens removed) and how many tokens the model produced."""

    text: str
    n_tokens: int


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


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every token id that ends generation: the generation config's (one or a list) and the tokenizer's."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def generation_settings(
    tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, generate_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``model.generate`` keyword arguments: greedy unless the caller says otherwise, the token budget, and the
    tokenizer's padding id."""
    settings = {"do_sample": False, **generate_kwargs, "max_new_tokens": max_new_tokens}
    settings.setdefault("pad_token_id", tokenizer.pad_token_id)
    return settings


def batched_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    new_tokens: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    extra_tokens: int,
    batch_size: int = 16,
    progress: bool = True,
) -> list[Completion]:
    """Answer every prompt with ``new_tokens(input_ids, attention_mask)``, the generated ids of one left-padded
    batch: prompts run longest first, to waste little padding, and come back decoded in the input order.

    ``extra_tokens`` is how far each prompt may grow (offset token, latents, new tokens); a batch that would
    outgrow the model's context is refused before it runs. Every generation method of the library runs here.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    if not prompts:
        raise ValueError("no prompts given")
    order = longest_first(tokenizer, prompts)
    eos_ids = eos_token_ids(model, tokenizer)
    results: dict[int, Completion] = {}
    for start in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch", disable=not progress):
        indices = order[start : start + batch_size]
        batch = encode(tokenizer, [prompts[i] for i in indices], model.device)
        check_fits(model, batch.attention_mask, extra_tokens)
        generated = new_tokens(batch.input_ids, batch.attention_mask)
        for i, completion in zip(indices, decode_completions(tokenizer, generated, eos_ids), strict=True):
            results[i] = completion
    return [results[i] for i in range(len(prompts))]


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    vector: SteeringVector | None = None,
    *,
    c_keys: float = 0.0,
    c_values: float = 0.0,
    layers: Iterable[int] | None = None,
    offset: str = DEFAULT_OFFSET,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    progress: bool = True,
    **generate_kwargs,
) -> list[Completion]:
    """Answer every prompt, with one-shot cache steering when a ``vector`` is given.

    Without a vector this is plain ``generate`` on the prompts (no offset token): the unsteered baseline.
    With one, ``offset`` is appended and the cache is steered. Completions hold only the newly generated
    tokens (the offset token is part of the input). Prompts are batched longest first, to waste little
    padding, and returned in the input order.
    """
    settings = generation_settings(tokenizer, max_new_tokens, generate_kwargs)
    offset_id = offset_token_id(tokenizer, offset) if vector is not None else None

    def new_tokens(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if offset_id is None:
            return model.generate(input_ids=ids, attention_mask=mask, **settings)[:, ids.shape[1] :]
        ids = torch.cat([ids, torch.full_like(ids[:, :1], offset_id)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        sequences = steered_generate(model, ids, mask, vector, c_keys=c_keys, c_values=c_values, layers=layers,
                                     **settings)
        return sequences[:, ids.shape[1] :]

    extra = max_new_tokens + (0 if offset_id is None else 1)
    return batched_completions(model, tokenizer, prompts, new_tokens, extra_tokens=extra, batch_size=batch_size,
                               progress=progress)
