"""Differentiable cache augmentation (Liu et al., 2024, arXiv 2412.17747): a coprocessor reads a frozen decoder's
KV cache and writes latent embeddings after it; trained with a look-ahead loss, next to a pause-token control.

The paper publishes no code. This module's choices:

* **Frozen decoder D.** Building an augmenter freezes the model (``requires_grad`` off for every weight, eval
  mode); nothing here ever steps its weights, so they stay bit-identical.
* **Coprocessor C.** A copy of D's decoder stack (no LM head) plus N_L trainable soft tokens. By default C is
  fine-tuned with LoRA (rank 8, alpha 16) on every linear projection of every layer; C's frozen base weights are
  *shared* with D, not copied, so C costs only its adapters. LoRA's B starts at zero, so at initialisation C
  computes exactly D's function. ``lora_rank=None`` fine-tunes a full copy instead (the paper's main setting;
  the ``full`` run size uses it), the input embedding table staying shared because C reads only soft tokens.
  On SmolLM2-135M, rank 8 trains 2,442,240 adapter weights + N_L x 576 soft-token values + 1 gain.
* **Reading the cache.** C runs on the soft tokens with ``past_key_values`` = a deep copy of D's prefix cache:
  it attends to D's keys and values of the prefix, gradients never flow into them, and D's cache is not changed.
* **Latents.** C's last hidden states at the soft tokens, *after* its final norm (the space D's LM head reads
  and, with tied embeddings, the space of D's token embeddings), rescaled to the mean norm of D's token
  embeddings and multiplied by one trainable gain (initially 1). Without the rescaling SmolLM2's latents would
  start ~15 times longer (norm ~50) than any input embedding (~3.2) D has seen.
* **Positions.** Prefix tokens count 0..L-1 from each row's first real token (left padding); the soft tokens
  in C and the latents in D both take L..L+N_L-1; the ahead tokens continue from L+N_L, which is also what
  ``generate`` does after an augmentation.
* **Look-ahead loss.** At a sampled position p of a text: prefix t[:p], the latents, then t[p..p+N_A-2]
  teacher-forced; D's logits at the last latent and at those tokens predict t[p..p+N_A-1]; cross-entropy on
  these N_A tokens only, kept per ahead position. With no latents the first prediction comes from the prefix's
  last token, so N_L = 0 is the plain model's loss on the same tokens. Samples are batched with left padding.
* **Pause-token control.** :class:`PauseTokens`: N_L trainable embeddings fed to D directly after the prefix,
  at the same positions and with the same loss, no coprocessor. Soft and pause tokens start as "typical token"
  embeddings (mean of D's token embeddings plus Gaussian noise with their spread); the same seed gives both the
  same starting vectors.
* **Switched off.** ``enabled = False`` or N_L = 0 adds nothing: outputs are the frozen model's exactly.
* **Training text** (:func:`training_texts`): GSM8K train questions with their human solutions (calculator
  annotations removed) and the train questions of ARC-Challenge, CommonsenseQA and PIQA, each with its shipped
  traces (``data/traces/*.jsonl``, train split only) when it has any; one document per item, duplicates
  dropped, and a seeded held-out share of every source's items that training never sees.
* **Training** (:func:`train`): AdamW (no weight decay), constant learning rate, gradient norm clipped at 1.
  The samples of step s come from ``random.Random(f"{seed}:{s}")``, so the data order needs no saved state.
  Every ``save_every`` steps a checkpoint folder (trainable tensors and AdamW state as safetensors, settings,
  step and losses as JSON) is written under a temporary name and renamed; only the latest is kept. Rerunning
  with more steps resumes from it and ends bit for bit where an uninterrupted run ends.
* **Generation** (:func:`augmented_generate`): one augmentation at the end of the prompt, then ``generate``
  continues from the augmented cache.

Command line (``--size quick`` runs in minutes on a CPU; ``--size full`` is meant for a GPU)::

    python -m cachesteer_lite.coprocessor train --n-latents 4 --steps 50 --out runs/cop4
    python -m cachesteer_lite.coprocessor train --kind pause --n-latents 4 --steps 50 --out runs/pause4
    python -m cachesteer_lite.coprocessor perplexity runs/cop4 runs/pause4
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .cache import left_padded_positions, new_cache, prefill
from .contrastive import TRACE_DIR
from .data import TASKS, gsm8k_reasoning, load_items
from .models import DEFAULT_MODEL, load_model
from .provenance import run_record
from .steering import Completion, batched_completions, generation_settings
from .traces import Trace, read_traces
from .vectors import model_fingerprint, model_id

KINDS: tuple[str, ...] = ("coprocessor", "pause")
PAD_ID = 0  # padding ids are always masked out, so any valid id will do
EMBEDDING_SAMPLE = 4096  # vocabulary rows read to measure D's token embeddings


# ---------------------------------------------------------------------------------------------------------------
# The frozen decoder and the two augmenters


def freeze(model: PreTrainedModel) -> None:
    """Turn off gradients for every weight of the decoder and put it in eval mode: only augmenters learn."""
    model.requires_grad_(False)
    model.eval()


@torch.no_grad()
def embedding_statistics(model: PreTrainedModel) -> tuple[torch.Tensor, float, float]:
    """Mean vector, spread (standard deviation of the centred entries) and mean norm of D's token embeddings.

    Measured through the embedding module on every k-th vocabulary row (about 4096 rows), so that embeddings
    the model scales on the way in (Gemma multiplies by sqrt(hidden size)) are measured as the decoder sees them.
    """
    embedding = model.get_input_embeddings()
    vocab = embedding.weight.shape[0]
    ids = torch.arange(0, vocab, max(1, vocab // EMBEDDING_SAMPLE), device=embedding.weight.device)
    vectors = embedding(ids).float()
    mean = vectors.mean(0)
    return mean, float((vectors - mean).pow(2).mean().sqrt()), float(vectors.norm(dim=-1).mean())


def typical_tokens(model: PreTrainedModel, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` starting embeddings ``[n, hidden]`` that look like token embeddings: the mean of D's token
    embeddings plus Gaussian noise with their spread (so each has a typical norm and they differ)."""
    mean, spread, _ = embedding_statistics(model)
    noise = torch.randn(n, mean.shape[0], generator=generator) * spread
    return (mean.cpu() + noise).to(device=model.device, dtype=model.dtype)


def _extend_mask(attention_mask: torch.Tensor, n: int) -> torch.Tensor:
    """The prefix mask followed by ``n`` real positions."""
    return torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], n)], dim=1)


def _following_positions(attention_mask: torch.Tensor, n: int) -> torch.Tensor:
    """Position ids ``[batch, n]`` of ``n`` inputs placed right after each row's real prefix tokens."""
    return attention_mask.long().sum(-1, keepdim=True) + torch.arange(n, device=attention_mask.device)


class Augmenter(nn.Module):
    """Writes N_L latent embeddings after a prefix: the :class:`Coprocessor` or the :class:`PauseTokens` control.

    ``enabled = False`` switches it off (no latents at all). Constructing one freezes the decoder.
    """

    kind = ""

    def __init__(self, model: PreTrainedModel, n_latents: int) -> None:
        super().__init__()
        if not isinstance(n_latents, int) or isinstance(n_latents, bool) or n_latents < 0:
            raise ValueError(f"n_latents must be an integer >= 0, got {n_latents!r}")
        freeze(model)
        self.n_latents = n_latents
        self.enabled = True

    @property
    def active_latents(self) -> int:
        """How many latents are written now: N_L, or 0 when switched off."""
        return self.n_latents if self.enabled else 0

    @property
    def n_trainable(self) -> int:
        """Number of trainable values (the decoder's shared, frozen weights excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def latents(self, model: PreTrainedModel, cache: DynamicCache, attention_mask: torch.Tensor) -> torch.Tensor:
        """Latent embeddings ``[batch, N_L, hidden]`` to follow the prefix held in ``cache`` (mask: the prefix's)."""
        raise NotImplementedError

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors by parameter name: what a checkpoint stores."""
        return {name: p.detach().contiguous() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy tensors written by :meth:`trainable_state` into this augmenter, checking names and shapes."""
        params = {name: p for name, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        if missing or unexpected:
            raise ValueError(f"the saved tensors do not fit this {self.kind}: missing {missing[:3]}"
                             f"{' ...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                             f"{' ...' if len(unexpected) > 3 else ''}")
        with torch.no_grad():
            for name, param in params.items():
                if tensors[name].shape != param.shape:
                    raise ValueError(f"saved {name} has shape {tuple(tensors[name].shape)}, "
                                     f"this {self.kind} has {tuple(param.shape)}")
                param.copy_(tensors[name])


class PauseTokens(Augmenter):
    """The control: N_L trainable embeddings fed to the decoder right after the prefix, with no coprocessor."""

    kind = "pause"

    def __init__(self, model: PreTrainedModel, n_latents: int, *, seed: int = 0) -> None:
        super().__init__(model, n_latents)
        self.embeddings = nn.Parameter(typical_tokens(model, n_latents, torch.Generator().manual_seed(seed)))

    def latents(self, model: PreTrainedModel, cache: DynamicCache, attention_mask: torch.Tensor) -> torch.Tensor:
        """The same trained embeddings after every prefix."""
        return self.embeddings.unsqueeze(0).expand(attention_mask.shape[0], -1, -1)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update ``(alpha / rank) * B A``.

    B starts at zero, so the layer starts as exactly the frozen one; A starts as in LoRA (Kaiming uniform).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        lora_a = torch.empty(rank, base.in_features)
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5), generator=generator)
        self.lora_a = nn.Parameter(lora_a.to(device=weight.device, dtype=weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen output plus the scaled low-rank update."""
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale


def add_lora(module: nn.Module, rank: int, alpha: float, generator: torch.Generator) -> int:
    """Wrap every ``nn.Linear`` inside ``module`` in :class:`LoRALinear`; return how many were wrapped."""
    targets = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    for parent, name, linear in targets:
        setattr(parent, name, LoRALinear(linear, rank, alpha, generator))
    return len(targets)


class Coprocessor(Augmenter):
    """A copy of the decoder stack with N_L soft tokens; reads the decoder's prefix cache and returns latents.

    ``lora_rank``: LoRA rank of the adapters on every linear projection (the frozen weights are shared with the
    decoder), or None to fine-tune a full copy. ``seed`` fixes the soft tokens' and adapters' starting values.
    """

    kind = "coprocessor"

    def __init__(
        self, model: PreTrainedModel, n_latents: int, *, lora_rank: int | None = 8, lora_alpha: float = 16.0,
        seed: int = 0,
    ) -> None:
        super().__init__(model, n_latents)
        if lora_rank is not None and (not isinstance(lora_rank, int) or lora_rank < 1):
            raise ValueError(f"lora_rank must be a positive integer, or None for full fine-tuning; got {lora_rank!r}")
        decoder = model.get_decoder()
        shared = list(decoder.parameters() if lora_rank else decoder.get_input_embeddings().parameters())
        # The memo makes deepcopy reuse (not copy) the shared tensors.
        self.decoder = copy.deepcopy(decoder, memo={id(p): p for p in shared})
        generator = torch.Generator().manual_seed(seed)
        self.soft_tokens = nn.Parameter(typical_tokens(model, n_latents, generator))
        if lora_rank:
            if add_lora(self.decoder, lora_rank, lora_alpha, generator) == 0:
                raise ValueError(f"{type(decoder).__name__} has no nn.Linear layers to adapt; use lora_rank=None")
        else:
            shared_ids = {id(p) for p in shared}
            for param in self.decoder.parameters():
                param.requires_grad_(id(param) not in shared_ids)
        self.gain = nn.Parameter(torch.ones((), device=model.device, dtype=model.dtype))
        self.latent_norm = embedding_statistics(model)[2]

    def hidden_states(self, cache: DynamicCache, attention_mask: torch.Tensor) -> torch.Tensor:
        """C's last hidden states (after its final norm) at the soft tokens, attending to a copy of ``cache``."""
        n = self.n_latents
        soft = self.soft_tokens.unsqueeze(0).expand(attention_mask.shape[0], -1, -1)
        return self.decoder(
            inputs_embeds=soft,
            attention_mask=_extend_mask(attention_mask, n),
            position_ids=_following_positions(attention_mask, n),
            past_key_values=copy.deepcopy(cache),  # C appends its own keys/values to the copy only
            use_cache=True,
        ).last_hidden_state

    def latents(self, model: PreTrainedModel, cache: DynamicCache, attention_mask: torch.Tensor) -> torch.Tensor:
        """The hidden states rescaled to the mean norm of the decoder's token embeddings, times the gain."""
        hidden = self.hidden_states(cache, attention_mask)
        return hidden * (self.gain * self.latent_norm / hidden.norm(dim=-1, keepdim=True))


def active_latents(augmenter: Augmenter | None) -> int:
    """Latents written by ``augmenter`` now (0 for None, the plain model)."""
    return 0 if augmenter is None else augmenter.active_latents


# ---------------------------------------------------------------------------------------------------------------
# The look-ahead objective


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
    if active_latents(augmenter):
        inputs.insert(0, augmenter.latents(model, cache, batch.prefix_mask).to(model.dtype))
    embeds = torch.cat(inputs, dim=1)
    if embeds.shape[1] == 0:  # N_A = 1 and no latents: the prefix's prediction is all there is
        return first
    rest = model(inputs_embeds=embeds, attention_mask=_extend_mask(batch.prefix_mask, embeds.shape[1]),
                 position_ids=_following_positions(batch.prefix_mask, embeds.shape[1]), past_key_values=cache,
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
                      seed: int = 0) -> dict[str, float]:
    """Mean per-sample loss difference (ours - reference, nats; negative: ours predicts better) with a 95%
    bootstrap interval over samples. Both must come from the same samples (same texts, N_A and seed)."""
    if ours.n_samples != reference.n_samples:
        raise ValueError(f"scored on different samples ({ours.n_samples} vs {reference.n_samples})")
    differences = torch.tensor(ours.sample_loss, dtype=torch.float64) - torch.tensor(reference.sample_loss,
                                                                                    dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(differences), (n_boot, len(differences)), generator=generator)
    means = differences[draws].mean(1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"mean": differences.mean().item(), "ci95": [low, high],
            "share_better": (differences < 0).double().mean().item()}


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
    plain model, N_L = 0). Samples are batched in order of prefix length to waste little padding."""
    token_lists = tokenize_texts(tokenizer, texts, max_tokens)
    samples = evaluation_samples([len(t) for t in token_lists], n_ahead, min_prefix, positions_per_text, seed)
    if not samples:
        raise ValueError(f"no text has the {min_prefix} + {n_ahead} tokens a sample needs")
    order = sorted(range(len(samples)), key=lambda i: samples[i][1])
    losses = torch.zeros(len(samples), n_ahead, dtype=torch.float64)
    for start in tqdm(range(0, len(order), batch_size), desc="perplexity", unit="batch", disable=not progress):
        chosen = order[start : start + batch_size]
        batch = make_batch(token_lists, [samples[i] for i in chosen], n_ahead, model.device)
        losses[chosen] = lookahead_losses(model, augmenter, batch).double().cpu()
    return AheadPerplexity(losses.mean(0).tolist(), len(samples), losses.mean(1).tolist())


# ---------------------------------------------------------------------------------------------------------------
# Training text


@dataclass(frozen=True)
class Document:
    """One text: a train-split item of ``source`` (a task) with its worked solution(s) when it has any."""

    source: str
    index: int
    text: str


class TextSplit(NamedTuple):
    """Documents to train on and held-out documents to evaluate on; no item and no text is in both."""

    train: list[Document]
    held_out: list[Document]


def _answer_line(reasoning: str, answer: str) -> str:
    return f"Answer: {reasoning} The answer is {answer}."


def reasoning_documents(traces_dir: str | Path | None = TRACE_DIR) -> list[Document]:
    """Every train item of the four tasks as a document, exact duplicate texts dropped.

    GSM8K: question and human solution (calculator annotations removed, :func:`data.gsm8k_reasoning`). ARC,
    CSQA, PIQA: the formatted question, then one answer line per trace of that item in ``traces_dir/*.jsonl``
    (train-split traces only: a trace of an evaluation item must never be trained on). None: no traces.
    """
    traces: list[Trace] = []
    if traces_dir is not None:
        if not Path(traces_dir).is_dir():
            raise FileNotFoundError(f"trace folder {traces_dir} not found (pass traces_dir=None to use no traces)")
        traces = [trace for path in sorted(Path(traces_dir).glob("*.jsonl")) for trace in read_traces(path)]
    solutions: dict[tuple[str, int], list[str]] = defaultdict(list)
    for trace in traces:
        if trace.split == "train":
            solutions[(trace.task, trace.index)].append(_answer_line(trace.reasoning, trace.answer))
    documents = []
    for task in TASKS:
        for item in load_items(task, "train"):
            if task == "gsm8k":
                lines = [_answer_line(gsm8k_reasoning(item.raw["answer"]), item.answer)]
            else:
                lines = solutions[(task, item.index)]
            documents.append(Document(task, item.index, "\n".join([f"Question: {item.question}", *lines])))
    unique: dict[str, Document] = {}
    for document in documents:
        unique.setdefault(document.text, document)
    return list(unique.values())


def split_documents(documents: Sequence[Document], held_out_fraction: float = 0.05, seed: int = 0) -> TextSplit:
    """Hold out a seeded ``held_out_fraction`` of every source's documents (at least one each).

    The held-out list is shuffled across sources, so its first few documents are a mixed sample.
    """
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be between 0 and 1, got {held_out_fraction}")
    by_source: dict[str, list[Document]] = defaultdict(list)
    for document in documents:
        by_source[document.source].append(document)
    train: list[Document] = []
    held_out: list[Document] = []
    for source in sorted(by_source):
        ordered = sorted(by_source[source], key=lambda document: document.index)
        random.Random(f"{seed}:{source}").shuffle(ordered)
        n_held = max(1, round(held_out_fraction * len(ordered)))
        held_out += ordered[:n_held]
        train += ordered[n_held:]
    random.Random(f"{seed}:held-out").shuffle(held_out)
    return TextSplit(train, held_out)


def training_texts(
    held_out_fraction: float = 0.05, seed: int = 0, traces_dir: str | Path | None = TRACE_DIR
) -> TextSplit:
    """The offline training text of this project, split into train and held-out documents."""
    return split_documents(reasoning_documents(traces_dir), held_out_fraction, seed)


# ---------------------------------------------------------------------------------------------------------------
# Training, checkpoints and resuming


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides the model and the texts.

    ``lora_rank`` None fine-tunes a full copy of the decoder (coprocessor only). ``max_tokens`` cuts each text;
    ``min_prefix`` is the shortest prefix sampled. ``steps`` and ``save_every`` may change between a run and
    its resumption; every other field must stay the same.
    """

    kind: str = "coprocessor"
    n_latents: int = 4
    n_ahead: int = 4
    lora_rank: int | None = 8
    lora_alpha: float = 16.0
    steps: int = 50
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_tokens: int = 96
    min_prefix: int = 8
    save_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        for name in ("n_latents", "n_ahead", "steps", "batch_size", "max_tokens", "min_prefix", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_tokens < self.min_prefix + self.n_ahead:
            raise ValueError(f"max_tokens ({self.max_tokens}) leaves no room for a prefix of {self.min_prefix} "
                             f"tokens plus {self.n_ahead} ahead tokens")


RESUMABLE_FIELDS: frozenset[str] = frozenset({"steps", "save_every"})


class RunSize(NamedTuple):
    """A training configuration and how much held-out text its evaluation reads."""

    config: TrainConfig
    eval_texts: int | None  # held-out texts scored (None: all)
    eval_positions: int  # sampled split points per held-out text


RUN_SIZES: dict[str, RunSize] = {
    # CPU, minutes: LoRA, short texts, a few dozen steps.
    "quick": RunSize(TrainConfig(), eval_texts=40, eval_positions=4),
    # A GPU: full fine-tuning, 16 latents and 16 ahead tokens, longer texts.
    "full": RunSize(TrainConfig(n_latents=16, n_ahead=16, lora_rank=None, steps=3000, batch_size=32, lr=1e-4,
                                max_tokens=256, save_every=250), eval_texts=None, eval_positions=16),
}


def build_augmenter(model: PreTrainedModel, config: TrainConfig) -> Augmenter:
    """A fresh, seeded augmenter of the configured kind."""
    if config.kind == "pause":
        return PauseTokens(model, config.n_latents, seed=config.seed)
    return Coprocessor(model, config.n_latents, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                       seed=config.seed)


def training_samples(lengths: Sequence[int], step: int, config: TrainConfig) -> list[tuple[int, int]]:
    """The (text, split point) samples of one step: texts uniformly, then a split point uniformly.

    Drawn from a generator seeded by (seed, step) alone, so a resumed run sees exactly the same data.
    """
    rng = random.Random(f"{config.seed}:{step}")
    samples = []
    for _ in range(config.batch_size):
        text = rng.randrange(len(lengths))
        samples.append((text, rng.choice(valid_positions(lengths[text], config.n_ahead, config.min_prefix))))
    return samples


def texts_digest(texts: Sequence[str]) -> str:
    """SHA-256 of the training texts, stored with a run so that it only resumes on the same texts."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


CHECKPOINT_PREFIX = "checkpoint-"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint folder with the most steps in ``run_dir``, or None."""
    folders = [path for path in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}[0-9]*") if (path / "state.json").is_file()]
    return max(folders, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]), default=None)


def checkpoint_state(path: str | Path) -> tuple[Path, dict]:
    """The checkpoint folder ``path`` names (a checkpoint, or a run folder: its latest) and its state.json."""
    path = Path(path)
    checkpoint = path if (path / "state.json").is_file() else latest_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"{path} holds no checkpoint (a {CHECKPOINT_PREFIX}N folder with a state.json)")
    return checkpoint, json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's per-parameter state as flat safetensors entries ``{param index}.{name}``."""
    return {f"{index}.{name}": value.contiguous() for index, state in optimizer.state_dict()["state"].items()
            for name, value in state.items()}


def _load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore state written by :func:`_optimizer_tensors`; hyperparameters come from the fresh optimizer."""
    state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    optimizer.load_state_dict({"state": dict(state), "param_groups": optimizer.state_dict()["param_groups"]})


def save_checkpoint(run_dir: Path, augmenter: Augmenter, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Write ``checkpoint-{step}`` under a temporary name, rename it, then delete older checkpoints."""
    target = run_dir / f"{CHECKPOINT_PREFIX}{state['step']:06d}"
    staging = run_dir / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)  # left behind by an interrupted save
    staging.mkdir()
    try:
        save_file(augmenter.trainable_state(), staging / "augmenter.safetensors")
        save_file(_optimizer_tensors(optimizer), staging / "optimizer.safetensors")
        (staging / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in run_dir.glob(f"{CHECKPOINT_PREFIX}[0-9]*"):
        if int(old.name[len(CHECKPOINT_PREFIX) :]) < state["step"]:
            shutil.rmtree(old)
    return target


def _resume(
    checkpoint: Path, state: dict, augmenter: Augmenter, optimizer: torch.optim.Optimizer, config: TrainConfig,
    identity: dict,
) -> None:
    """Load a checkpoint into a fresh augmenter and optimizer after checking it belongs to this run."""
    saved = TrainConfig(**state["config"])
    changed = [f.name for f in fields(TrainConfig)
               if f.name not in RESUMABLE_FIELDS and getattr(saved, f.name) != getattr(config, f.name)]
    changed += [key for key, value in identity.items() if state.get(key) != value]
    if changed:
        raise ValueError(f"{checkpoint.parent} holds a run with other {', '.join(changed)}; resume with the same "
                         "model, texts and settings (only steps and save_every may change), or use another folder")
    if state["step"] > config.steps:
        raise ValueError(f"{checkpoint} has already trained {state['step']} steps, more than the {config.steps} asked")
    device = str(next(augmenter.parameters()).device)
    augmenter.load_trainable_state(load_file(checkpoint / "augmenter.safetensors", device=device))
    _load_optimizer_tensors(optimizer, load_file(checkpoint / "optimizer.safetensors", device=device))


class TrainResult(NamedTuple):
    """The trained augmenter and the loss of every step (resumed steps included)."""

    augmenter: Augmenter
    losses: list[float]


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    config: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train an augmenter with the look-ahead loss on ``texts``; only the augmenter learns.

    Resumes from the latest checkpoint in ``run_dir`` when there is one (same model, texts and settings).
    Texts too short for one sample (``min_prefix`` + ``n_ahead`` tokens) are skipped.
    """
    run_dir = Path(run_dir)
    token_lists = [ids for ids in tokenize_texts(tokenizer, texts, config.max_tokens)
                   if len(valid_positions(len(ids), config.n_ahead, config.min_prefix))]
    if not token_lists:
        raise ValueError(f"no text has the {config.min_prefix} + {config.n_ahead} tokens a training sample needs")
    lengths = [len(ids) for ids in token_lists]
    augmenter = build_augmenter(model, config)
    trainable = [p for p in augmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    identity = {"model_id": model_id(model), "fingerprint": model_fingerprint(model),
                "texts_sha256": texts_digest(texts)}
    start, losses = 0, []
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        _, state = checkpoint_state(checkpoint)
        _resume(checkpoint, state, augmenter, optimizer, config, identity)
        start, losses = state["step"], list(state["losses"])
    run_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=f"training {config.kind}",
               disable=not progress)
    for step in bar:
        batch = make_batch(token_lists, training_samples(lengths, step, config), config.n_ahead, model.device)
        loss = lookahead_losses(model, augmenter, batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            state = {"config": asdict(config), "step": step + 1, "losses": losses,
                     "trainable_parameters": augmenter.n_trainable, **identity}
            save_checkpoint(run_dir, augmenter, optimizer, state)
    return TrainResult(augmenter, losses)


def load_augmenter(model: PreTrainedModel, path: str | Path) -> Augmenter:
    """The trained augmenter of a checkpoint folder, or of a run folder's latest checkpoint, for ``model``."""
    checkpoint, state = checkpoint_state(path)
    if state["fingerprint"] != model_fingerprint(model):
        raise ValueError(f"{checkpoint} was trained on {state['model_id']!r} {state['fingerprint']}, which does not "
                         f"fit {model_id(model)!r} {model_fingerprint(model)}")
    augmenter = build_augmenter(model, TrainConfig(**state["config"]))
    device = str(next(augmenter.parameters()).device)
    augmenter.load_trainable_state(load_file(checkpoint / "augmenter.safetensors", device=device))
    return augmenter


# ---------------------------------------------------------------------------------------------------------------
# Generation after one augmentation at the end of the prompt


@torch.no_grad()
def augmented_inputs(
    model: PreTrainedModel, augmenter: Augmenter | None, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
    """What ``generate`` needs to continue after the prompt and its latents.

    Returns a cache holding every input but the last, the embeddings of all inputs (prompt tokens, then
    latents) and their mask: ``generate`` runs the last input itself and so predicts the first new token from
    the last latent (or, with no latents, from the last prompt token, exactly as plain ``generate`` does).
    """
    n = active_latents(augmenter)
    embeds = model.get_input_embeddings()(input_ids)
    if n == 0:
        if input_ids.shape[1] < 2:
            raise ValueError("prompts must be at least two tokens long")
        return prefill(model, input_ids[:, :-1], attention_mask[:, :-1]), embeds, attention_mask
    cache = prefill(model, input_ids, attention_mask)
    latents = augmenter.latents(model, cache, attention_mask).to(model.dtype)
    if n > 1:
        _append_latents(model, cache, latents[:, :-1], attention_mask)
    return cache, torch.cat([embeds, latents], dim=1), _extend_mask(attention_mask, n)


def _append_latents(model: PreTrainedModel, cache: DynamicCache, latents: torch.Tensor,
                    attention_mask: torch.Tensor) -> None:
    """Run ``latents`` through the decoder right after the prompt of ``attention_mask``, extending ``cache``."""
    n = latents.shape[1]
    model(inputs_embeds=latents, attention_mask=_extend_mask(attention_mask, n),
          position_ids=_following_positions(attention_mask, n), past_key_values=cache, use_cache=True,
          logits_to_keep=1)


@torch.no_grad()
def augmented_cache(
    model: PreTrainedModel, augmenter: Augmenter | None, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> DynamicCache:
    """The decoder's cache after the prompt and all its latents. What the augmentation writes into the cache is
    the last N_L positions of every layer: the learned, input-dependent counterpart of a steering vector's
    fixed edit of the prompt's last position."""
    cache = prefill(model, input_ids, attention_mask)
    n = active_latents(augmenter)
    if n:
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

    ``augmenter`` None, switched off or with N_L = 0 gives the plain model's answers exactly. Prompts are
    batched longest first and returned in input order, as :func:`steering.generate` does.
    """
    settings = generation_settings(tokenizer, max_new_tokens, generate_kwargs)

    def new_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return augmented_sequences(model, augmenter, input_ids, attention_mask, **settings)

    return batched_completions(model, tokenizer, prompts, new_tokens,
                               extra_tokens=active_latents(augmenter) + max_new_tokens, batch_size=batch_size,
                               progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cachesteer_lite.coprocessor",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train a coprocessor or the pause-token control")
    train_cmd.add_argument("--out", required=True, type=Path, help="run folder (resumed when it has a checkpoint)")
    train_cmd.add_argument("--kind", choices=KINDS, default="coprocessor")
    train_cmd.add_argument("--n-latents", type=int)
    train_cmd.add_argument("--n-ahead", type=int)
    train_cmd.add_argument("--lora-rank", type=int, help="0: fine-tune a full copy of the decoder")
    train_cmd.add_argument("--steps", type=int)
    train_cmd.add_argument("--batch-size", type=int)
    train_cmd.add_argument("--lr", type=float)
    train_cmd.add_argument("--seed", type=int)
    ppl = commands.add_parser("perplexity", help="held-out perplexity by ahead position: plain model vs runs")
    ppl.add_argument("runs", nargs="*", type=Path, help="run or checkpoint folders (the plain model is always scored)")
    ppl.add_argument("--n-ahead", type=int, help="default: the runs' N_A, else the run size's")
    ppl.add_argument("--limit", type=int, help="held-out texts to score (default: the run size's)")
    ppl.add_argument("--positions", type=int, help="split points per text (default: the run size's)")
    ppl.add_argument("--json", type=Path, help="also write the results here")
    for command in (train_cmd, ppl):
        command.add_argument("--size", choices=tuple(RUN_SIZES), default="quick")
        command.add_argument("--model", default=DEFAULT_MODEL, help="embedded model, local folder or hub id")
        command.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
        command.add_argument("--threads", type=int, help="CPU threads for torch")
        command.add_argument("--held-out-fraction", type=float, default=0.05)
        command.add_argument("--split-seed", type=int, default=0)
    return parser


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The run size's configuration with the command line's overrides."""
    given = {"kind": args.kind, "n_latents": args.n_latents, "n_ahead": args.n_ahead, "steps": args.steps,
             "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    overrides = {name: value for name, value in given.items() if value is not None}
    if args.lora_rank is not None:
        overrides["lora_rank"] = args.lora_rank or None
    return TrainConfig(**{**asdict(RUN_SIZES[args.size].config), **overrides})


def _perplexity_table(rows: list[tuple[str, int, AheadPerplexity]]) -> str:
    """One line per model: N_L, then the perplexity at each ahead position and the mean loss."""
    n_ahead = len(rows[0][2].loss)
    header = f"{'model':<32} {'N_L':>4} " + " ".join(f"{f'ppl@{i + 1}':>9}" for i in range(n_ahead)) + "  mean loss"
    lines = [header]
    for name, n_latents, result in rows:
        cells = " ".join(f"{value:9.3f}" for value in result.perplexity)
        lines.append(f"{name:<32} {n_latents:>4} {cells}  {result.mean_loss:9.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``train`` one augmenter, or score ``perplexity`` of runs against the plain model."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = RUN_SIZES[args.size]
    model, tokenizer = load_model(args.model, device=args.device)
    split = training_texts(args.held_out_fraction, args.split_seed)
    if args.command == "train":
        config = _train_config(args)
        print(f"{config.kind}: N_L={config.n_latents}, N_A={config.n_ahead}; {len(split.train)} training texts, "
              f"{len(split.held_out)} held out")
        result = train(model, tokenizer, [d.text for d in split.train], config, args.out)
        print(f"{result.augmenter.n_trainable:,} trainable values; losses: "
              + " ".join(f"{loss:.3f}" for loss in result.losses))
        return 0
    loaded = [(path, load_augmenter(model, path), checkpoint_state(path)[1]) for path in args.runs]
    horizons = {state["config"]["n_ahead"] for _, _, state in loaded}
    if args.n_ahead is None and len(horizons) > 1:
        raise SystemExit(f"the runs use different N_A {sorted(horizons)}; choose one with --n-ahead")
    n_ahead = args.n_ahead or (horizons.pop() if horizons else size.config.n_ahead)
    limit = args.limit if args.limit is not None else size.eval_texts
    texts = [d.text for d in split.held_out][:limit]
    options = dict(n_ahead=n_ahead, positions_per_text=args.positions or size.eval_positions,
                   max_tokens=size.config.max_tokens, min_prefix=size.config.min_prefix)
    started = time.perf_counter()
    rows = [("plain model", 0, perplexity_by_ahead_position(model, tokenizer, texts, None, **options), None)]
    for path, augmenter, state in loaded:
        result = perplexity_by_ahead_position(model, tokenizer, texts, augmenter, **options)
        rows.append((f"{augmenter.kind} {path.name} @{state['step']}", augmenter.n_latents, result, (path, state)))
    print(f"{len(texts)} held-out texts, {rows[0][2].n_samples} split points, N_A={n_ahead}")
    print(_perplexity_table([row[:3] for row in rows]))
    if args.json:
        plain = rows[0][2]
        record = {
            "model": model_id(model),
            "settings": {**options, "held_out_texts": len(texts), "held_out_fraction": args.held_out_fraction,
                         "split_seed": args.split_seed, "texts_sha256": texts_digest(texts)},
            "rows": [{"run": name, "n_latents": n, **result.to_dict(),
                      **({} if run is None else {
                          "kind": run[1]["config"]["kind"], "path": run[0].as_posix(), "step": run[1]["step"],
                          "train_config": run[1]["config"], "difference_vs_plain": paired_difference(result, plain)})}
                     for name, n, result, run in rows],
            "wall_time_s": round(time.perf_counter() - started, 3),
            **run_record(model.device),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
