"""The look-ahead objective of cache augmentation, and perplexity by ahead position.

At a sampled position p of a text: prefix t[:p], the latents, then t[p..p+N_A-2] teacher-forced; D's logits at
the last latent and at those tokens predict t[p..p+N_A-1]; cross-entropy on these N_A tokens only, kept per
ahead position. With no latents the first prediction comes from the prefix's last token, so N_L = 0 is the plain
model's loss on the same tokens. Samples are batched with left padding.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.batching import length_batches
from ..core.cache import left_padded_positions, new_cache
from ..core.progress import progress_bar
from ..runs.statistics import bootstrap_mean
from .augmenters import Augmenter, active_latents, extend_mask, following_positions

PAD_ID = 0  # padding ids are always masked out, so any valid id will do

class LookaheadBatch(NamedTuple):
    """Left-padded prefixes and the N_A tokens that follow each of them."""

    prefix_ids: torch.Tensor  # [batch, longest prefix]
    prefix_mask: torch.Tensor  # [batch, longest prefix], 0 on the left padding
    ahead_ids: torch.Tensor  # [batch, N_A]


def tokenize_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each text, cut after ``max_tokens`` (with the BOS the tokenizer adds for its model, if any)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    return tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_tokens).input_ids


def valid_positions(n_tokens: int, n_ahead: int, min_prefix: int) -> range:
    """Split points p of a text of ``n_tokens`` tokens: a prefix of at least ``min_prefix`` tokens, then N_A more."""
    return range(min_prefix, n_tokens - n_ahead + 1)


def make_batch(
    token_lists: Sequence[Sequence[int]], samples: Sequence[tuple[int, int]], n_ahead: int, device: torch.device | str
) -> LookaheadBatch:
    """The batch of ``samples``, each (text index, split point p): prefix t[:p] and ahead tokens t[p:p+N_A]."""
    prefixes = [list(token_lists[text][:p]) for text, p in samples]
    ahead = [list(token_lists[text][p : p + n_ahead]) for text, p in samples]
    if any(len(tokens) != n_ahead for tokens in ahead) or any(not prefix for prefix in prefixes):
        raise ValueError(f"every sample needs a non-empty prefix and {n_ahead} tokens after it")
    width = max(len(prefix) for prefix in prefixes)
    ids = [[PAD_ID] * (width - len(prefix)) + prefix for prefix in prefixes]
    mask = [[0] * (width - len(prefix)) + [1] * len(prefix) for prefix in prefixes]
    return LookaheadBatch(torch.tensor(ids, device=device), torch.tensor(mask, device=device),
                          torch.tensor(ahead, device=device))


def lookahead_logits(model: PreTrainedModel, augmenter: Augmenter | None, batch: LookaheadBatch) -> torch.Tensor:
    """D's logits ``[batch, N_A, vocab]`` for the ahead tokens: prefix (no gradient), latents, teacher forcing.

    Logit i predicts ahead token i. With latents, the first comes from the last latent; without (N_L = 0,
    switched off, or ``augmenter`` None), from the prefix's last token.
    """
    n_ahead = batch.ahead_ids.shape[1]
    if n_ahead < 1:
        raise ValueError("the look-ahead needs at least one ahead token")
    cache = new_cache(model)
    with torch.no_grad():
        first = model(input_ids=batch.prefix_ids, attention_mask=batch.prefix_mask,
                      position_ids=left_padded_positions(batch.prefix_mask), past_key_values=cache, use_cache=True,
                      logits_to_keep=1).logits
    inputs = [model.get_input_embeddings()(batch.ahead_ids[:, :-1])]
    if augmenter is not None and active_latents(augmenter):
        inputs.insert(0, augmenter.latents(model, cache, batch.prefix_mask).to(model.dtype))
    embeds = torch.cat(inputs, dim=1)
    if embeds.shape[1] == 0:  # N_A = 1 and no latents: the prefix's prediction is all there is
        return first
    rest = model(inputs_embeds=embeds, attention_mask=extend_mask(batch.prefix_mask, embeds.shape[1]),
                 position_ids=following_positions(batch.prefix_mask, embeds.shape[1]), past_key_values=cache,
                 use_cache=True, logits_to_keep=n_ahead).logits
    return torch.cat([first, rest], dim=1)[:, -n_ahead:]


def lookahead_losses(model: PreTrainedModel, augmenter: Augmenter | None, batch: LookaheadBatch) -> torch.Tensor:
    """Cross-entropy (nats) of every ahead token, ``[batch, N_A]``: column i is ahead position i + 1."""
    logits = lookahead_logits(model, augmenter, batch)
    targets = batch.ahead_ids
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


@dataclass(frozen=True)
class AheadPerplexity:
    """Mean look-ahead loss (nats) at each ahead position 1..N_A over ``n_samples`` sampled positions, and each
    sample's loss averaged over its N_A positions (in the order of :func:`evaluation_samples`), so that two
    augmenters scored on the same samples can be compared pair by pair."""

    loss: list[float]
    n_samples: int
    sample_loss: list[float]

    @property
    def perplexity(self) -> list[float]:
        """exp(mean loss) at each ahead position."""
        return [math.exp(value) for value in self.loss]

    @property
    def mean_loss(self) -> float:
        """The loss averaged over ahead positions (the training objective)."""
        return sum(self.loss) / len(self.loss)

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {"loss": self.loss, "perplexity": self.perplexity, "mean_loss": self.mean_loss,
                "n_samples": self.n_samples, "sample_loss": self.sample_loss}


def paired_difference(ours: AheadPerplexity, reference: AheadPerplexity, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Mean per-sample loss difference (ours - reference, nats; negative: ours predicts better) with a 95%
    bootstrap interval over samples (:func:`runs.statistics.bootstrap_mean`). Both must come from the same
    samples (same texts, N_A and seed)."""
    if ours.n_samples != reference.n_samples:
        raise ValueError(f"scored on different samples ({ours.n_samples} vs {reference.n_samples})")
    differences = [a - b for a, b in zip(ours.sample_loss, reference.sample_loss, strict=True)]
    return bootstrap_mean(differences, n_boot, seed)


def evaluation_samples(
    lengths: Sequence[int], n_ahead: int, min_prefix: int, positions_per_text: int, seed: int = 0
) -> list[tuple[int, int]]:
    """Up to ``positions_per_text`` distinct split points per text, seeded; texts too short are skipped.

    They depend on the texts, N_A and the seed only, so every augmenter (and N_L) is scored on the same tokens.
    """
    rng = random.Random(f"evaluation:{seed}")
    samples = []
    for text, length in enumerate(lengths):
        candidates = valid_positions(length, n_ahead, min_prefix)
        samples += [(text, p) for p in sorted(rng.sample(candidates, min(positions_per_text, len(candidates))))]
    return samples


@torch.no_grad()
def perplexity_by_ahead_position(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    augmenter: Augmenter | None = None,
    *,
    n_ahead: int,
    positions_per_text: int = 4,
    max_tokens: int = 256,
    min_prefix: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> AheadPerplexity:
    """Look-ahead loss and perplexity by ahead position on held-out ``texts``, with ``augmenter`` (None: the
    plain model, N_L = 0). Samples of similar prefix lengths share a batch, to waste little padding."""
    token_lists = tokenize_texts(tokenizer, texts, max_tokens)
    samples = evaluation_samples([len(t) for t in token_lists], n_ahead, min_prefix, positions_per_text, seed)
    if not samples:
        raise ValueError(f"no text has the {min_prefix} + {n_ahead} tokens a sample needs")
    losses = torch.zeros(len(samples), n_ahead, dtype=torch.float64)
    batches = length_batches([p for _, p in samples], max_rows=batch_size)  # by prefix length: little padding
    for chosen in progress_bar(batches, desc="perplexity", unit="batch", enabled=progress):
        batch = make_batch(token_lists, [samples[i] for i in chosen], n_ahead, model.device)
        losses[chosen] = lookahead_losses(model, augmenter, batch).double().cpu()
    return AheadPerplexity(losses.mean(0).tolist(), len(samples), losses.mean(1).tolist())
