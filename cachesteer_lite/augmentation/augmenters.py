"""The two augmenters of cache augmentation: the :class:`Coprocessor` and the :class:`PauseTokens` control.

Both write N_L latent embeddings after a prefix; the frozen decoder D then continues from them. Building either
freezes D. The coprocessor is a copy of D's decoder stack (LoRA adapters on its shared, frozen weights by
default) that reads D's prefix cache and returns its last hidden states at N_L soft tokens, rescaled to the mean
norm of D's token embeddings and multiplied by one trainable gain. The control feeds N_L trainable embeddings to
D directly. With N_L = 0 or ``enabled = False`` neither adds anything.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, PreTrainedModel

KINDS: tuple[str, ...] = ("coprocessor", "pause")
EMBEDDING_SAMPLE = 4096  # vocabulary rows read to measure D's token embeddings


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


def extend_mask(attention_mask: torch.Tensor, n: int) -> torch.Tensor:
    """The prefix mask followed by ``n`` real positions."""
    return torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], n)], dim=1)


def following_positions(attention_mask: torch.Tensor, n: int) -> torch.Tensor:
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
            attention_mask=extend_mask(attention_mask, n),
            position_ids=following_positions(attention_mask, n),
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

