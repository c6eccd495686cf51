"""Answering with cache augmentation: one augmentation at the end of the prompt, then ``generate`` continues.

``augmenter`` None, switched off or with N_L = 0 gives the plain model's answers exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.cache import prefill
from ..core.generation import Completion, batched_completions, generation_settings
from .augmenters import Augmenter, active_latents, extend_mask, following_positions


@torch.no_grad()
def augmented_inputs(
    model: PreTrainedModel, augmenter: Augmenter | None, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
    """What ``generate`` needs to continue after the prompt and its latents.

    Returns a cache holding every input but the last, the embeddings of all inputs (prompt tokens, then
    latents) and their mask: ``generate`` runs the last input itself and so predicts the first new token from
    the last latent (or, with no latents, from the last prompt token, exactly as plain ``generate`` does). The
    ids and mask are moved to the model's device first.
    """
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    n = active_latents(augmenter)
    embeds = model.get_input_embeddings()(input_ids)
    if augmenter is None or n == 0:
        if input_ids.shape[1] < 2:
            raise ValueError("prompts must be at least two tokens long")
        return prefill(model, input_ids[:, :-1], attention_mask[:, :-1]), embeds, attention_mask
    cache = prefill(model, input_ids, attention_mask)
    latents = augmenter.latents(model, cache, attention_mask).to(model.dtype)
    if n > 1:
        _append_latents(model, cache, latents[:, :-1], attention_mask)
    return cache, torch.cat([embeds, latents], dim=1), extend_mask(attention_mask, n)


def _append_latents(model: PreTrainedModel, cache: DynamicCache, latents: torch.Tensor,
                    attention_mask: torch.Tensor) -> None:
    """Run ``latents`` through the decoder right after the prompt of ``attention_mask``, extending ``cache``."""
    n = latents.shape[1]
    model(inputs_embeds=latents, attention_mask=extend_mask(attention_mask, n),
          position_ids=following_positions(attention_mask, n), past_key_values=cache, use_cache=True,
          logits_to_keep=1)


@torch.no_grad()
def augmented_cache(
    model: PreTrainedModel, augmenter: Augmenter | None, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> DynamicCache:
    """The decoder's cache after the prompt and all its latents. What the augmentation writes into the cache is
    the last N_L positions of every layer: the learned, input-dependent counterpart of a steering vector's
    fixed edit of the prompt's last position. The ids and mask are moved to the model's device first."""
    attention_mask = attention_mask.to(model.device)  # the prefill moves the ids; the latents need the mask
    cache = prefill(model, input_ids, attention_mask)
    if augmenter is not None and active_latents(augmenter):
        _append_latents(model, cache, augmenter.latents(model, cache, attention_mask).to(model.dtype), attention_mask)
    return cache


def augmented_sequences(
    model: PreTrainedModel,
    augmenter: Augmenter | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    **generate_kwargs,
) -> torch.Tensor:
    """``model.generate`` after one augmentation at the end of a left-padded prompt batch: the new tokens only.

    The generation starts from embeddings, so ``generate`` sees no prompt ids: a ``repetition_penalty`` or
    ``no_repeat_ngram_size`` would ignore the prompt.
    """
    for own in ("past_key_values", "inputs_embeds", "input_ids", "cache_implementation"):
        if own in generate_kwargs:
            raise ValueError(f"cache augmentation builds its own inputs and cache; do not pass {own!r}")
    cache, embeds, mask = augmented_inputs(model, augmenter, input_ids, attention_mask)
    return model.generate(inputs_embeds=embeds, attention_mask=mask, past_key_values=cache, **generate_kwargs)


def augmented_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    augmenter: Augmenter | None,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    progress: bool = True,
    **generate_kwargs,
) -> list[Completion]:
    """Answer every prompt after one augmentation at its end (greedy unless ``generate_kwargs`` say otherwise).

    ``augmenter`` None, switched off or with N_L = 0 gives the plain model's answers exactly. Prompts of
    similar lengths share a batch and come back in input order, as in :func:`steering.generate`.
    """
    settings = generation_settings(tokenizer, max_new_tokens, generate_kwargs)

    def new_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return augmented_sequences(model, augmenter, input_ids, attention_mask, **settings)

    return batched_completions(model, tokenizer, prompts, new_tokens,
                               extra_tokens=active_latents(augmenter) + max_new_tokens, batch_size=batch_size,
                               progress=progress)
