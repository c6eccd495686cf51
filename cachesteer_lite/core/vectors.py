"""Steering vectors for keys and values: extraction from contrastive prompt pairs, saving and loading.

For every layer the vector is the mean over pairs of (positive - negative) key and value at one token of the
prompt (by default the last one), shape ``[n_kv_heads, head_dim]`` (paper-reference section 2.3). Stored as
safetensors (tensors) + JSON (metadata and checksum), never pickle, and checked completely when read back
(:mod:`vector_files`) and when applied to a model (:meth:`SteeringVector.check_compatible`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .batching import reading_batches
from .cache import prefill, read_position
from .checks import integer
from .progress import progress_bar
from .prompts import check_fits, encode
from .vector_files import VectorFileError, check_finite_shape, read_vector_files, write_vector_files


class IncompatibleVectorError(ValueError):
    """A steering vector does not fit the model's cache (other layer count, head count or head size)."""


def model_fingerprint(model: PreTrainedModel) -> dict[str, int | str]:
    """The cache shape a vector must match: layers, KV heads and head size, plus the architecture."""
    config = model.config.get_text_config()
    n_heads = config.num_attention_heads
    return {
        "architecture": type(model).__name__,
        "n_layers": int(config.num_hidden_layers),
        "n_kv_heads": int(getattr(config, "num_key_value_heads", None) or n_heads),
        "head_dim": int(getattr(config, "head_dim", None) or config.hidden_size // n_heads),
    }


def model_id(model: PreTrainedModel) -> str:
    """The name the model was loaded by (``load_model`` records it), else its ``name_or_path``, else (a model
    built in memory) its architecture."""
    return getattr(model, "name_or_alias", None) or model.config.name_or_path or f"unnamed {type(model).__name__}"


@dataclass
class VectorMetadata:
    """Where a steering vector came from; saved as JSON next to the tensors."""

    model_id: str
    fingerprint: dict[str, int | str]
    token_offset: int
    token_texts: list[str]
    n_pairs: int
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    notes: dict = field(default_factory=dict)


@dataclass
class SteeringVector:
    """Per-layer key and value directions, each ``[n_layers, n_kv_heads, head_dim]`` in float32."""

    keys: torch.Tensor
    values: torch.Tensor
    metadata: VectorMetadata

    def __post_init__(self) -> None:
        """Refuse tensors whose shape is not the one the metadata's fingerprint gives, or that are not finite."""
        shape = fingerprint_shape(self.metadata.fingerprint, ("n_layers", "n_kv_heads", "head_dim"))
        for name in ("keys", "values"):
            check_finite_shape("a steering vector", name, getattr(self, name), shape)

    def check_compatible(self, model: PreTrainedModel) -> None:
        """Raise IncompatibleVectorError unless the model's cache has the shape of this vector's tensors.

        Shapes decide; a different model name with the same shapes only warns (a base and an instruct
        model share shapes, and steering across them is a legitimate experiment).
        """
        names = ("n_layers", "n_kv_heads", "head_dim")
        check_shapes("steering vector", self.metadata.model_id, dict(zip(names, self.keys.shape, strict=True)),
                     {k: int(model_fingerprint(model)[k]) for k in names}, model)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` and ``<path>.json`` (with the tensors' checksum); return both paths."""
        return write_vector_files(path, {"keys": self.keys, "values": self.values}, self.metadata)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Read a vector written by :meth:`save` (``path`` may name either file or their common stem), checking
        its files, checksum, tensors and metadata; VectorFileError says what is wrong."""
        tensors, metadata = read_vector_files(path, "a steering vector", ("keys", "values"), VectorMetadata)
        try:
            return cls(tensors["keys"], tensors["values"], metadata)
        except ValueError as error:
            raise VectorFileError(f"{path}: {error}") from None


def fingerprint_shape(fingerprint: dict[str, int | str], names: tuple[str, ...]) -> tuple[int, ...]:
    """The tensor shape a fingerprint gives: its positive integer entries ``names``, in order."""
    values = [fingerprint.get(name) for name in names]
    if not all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in values):
        raise ValueError(f"the metadata's fingerprint needs positive integers {list(names)}, found {fingerprint}")
    return tuple(int(value) for value in values)  # type: ignore[arg-type]


def check_shapes(what: str, source: str, ours: dict[str, int], theirs: dict[str, int], model: PreTrainedModel) -> None:
    """Raise IncompatibleVectorError when a vector's shapes (``ours``) differ from the model's (``theirs``);
    warn when only the model name (``source``, where the vector came from) differs."""
    if ours != theirs:
        raise IncompatibleVectorError(
            f"{what} from {source!r} has {ours}, but the model {model_id(model)!r} has {theirs}; "
            "extract a new vector for this model"
        )
    if source != model_id(model):
        warnings.warn(f"{what} was extracted from {source!r}, applying it to {model_id(model)!r}", stacklevel=3)


@torch.no_grad()
def read_at_token(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    read: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    token_offset: int = -1,
    batch_size: int = 16,
    token_budget: int | None = None,
    progress: bool = True,
    desc: str = "reading",
) -> tuple[torch.Tensor, list[str]]:
    """``read(input_ids, attention_mask)`` (one row per prompt) over every prompt, rows stacked in input order
    (float32, on the CPU), plus the token at ``token_offset`` of each prompt. ``read`` gets CPU tensors and
    moves them to the model's device itself (:func:`cache.prefill` does).

    ``token_offset`` counts from the end of the prompt (-1: the last token). Prompts run in left-padded batches of
    similar lengths (:func:`batching.reading_batches`: at most ``batch_size`` rows and ``token_budget`` token
    slots, by default what suits the model's device), so the column ``token_offset`` holds the same real token
    position in every row.
    """
    if integer("token_offset", token_offset) >= 0:
        raise ValueError(f"token_offset counts from the end of the prompt and must be negative, got {token_offset}")
    integer("batch_size", batch_size, at_least=1)
    batches = reading_batches(model, tokenizer, texts, max_rows=batch_size, token_budget=token_budget)
    rows: list[torch.Tensor | None] = [None] * len(texts)
    tokens: list[str] = [""] * len(texts)
    for indices in progress_bar(batches, desc=desc, unit="batch", enabled=progress):
        batch = encode(tokenizer, [texts[i] for i in indices])  # on the CPU: ``read`` moves it to the model
        check_fits(model, batch.attention_mask)
        if not bool(batch.attention_mask[:, token_offset].all()):
            raise ValueError(f"a prompt is shorter than {-token_offset} tokens; token_offset {token_offset} is invalid")
        per_row = read(batch.input_ids, batch.attention_mask)
        read_tokens = [tokenizer.decode([token]) for token in batch.input_ids[:, token_offset].tolist()]
        for row, i in enumerate(indices):
            rows[i] = per_row[row].float().cpu()
            tokens[i] = read_tokens[row]
    return torch.stack(rows), tokens


def read_prompt_kv(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    token_offset: int = -1,
    batch_size: int = 16,
    token_budget: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every layer's key and value at one token of each prompt: ``[n_texts, n_layers, n_kv_heads, head_dim]``
    each, plus the token read in each prompt (batched as :func:`read_at_token` says)."""

    def key_and_value(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keys, values = read_position(prefill(model, input_ids, attention_mask), token_offset)  # [layers, batch, ...]
        return torch.stack((keys, values), dim=2).transpose(0, 1)  # [batch, layers, key/value, heads, dim]

    rows, tokens = read_at_token(model, tokenizer, texts, key_and_value, token_offset=token_offset,
                                 batch_size=batch_size, token_budget=token_budget, progress=progress,
                                 desc="reading KV")
    return rows[:, :, 0], rows[:, :, 1], tokens


def pair_texts(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The positive prompts, then their negatives in the same order (what :func:`pair_mean_difference` expects)."""
    if not pairs:
        raise ValueError("no contrastive pairs given: extraction needs at least one (positive, negative) pair")
    return [p for p, _ in pairs] + [n for _, n in pairs]


def pair_mean_difference(rows: torch.Tensor) -> torch.Tensor:
    """Mean of (positive - negative) over pairs, for rows read from :func:`pair_texts`: rows [0, n) are the
    positive prompts and [n, 2n) their negatives."""
    n = len(rows) // 2
    return (rows[:n] - rows[n:]).mean(0)


def extract_steering_vector(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    token_offset: int = -1,
    batch_size: int = 16,
    token_budget: int | None = None,
    progress: bool = True,
) -> SteeringVector:
    """Mean (positive - negative) key and value at one token of each prompt, for every layer.

    ``pairs`` are (positive, negative) prompt texts, for example from :func:`prompts.contrastive_pair`.
    ``token_offset`` counts from the end of each prompt: -1 is the last token, -2 the one before. Each positive and
    each negative prompt is batched by its own length, not beside its pair (:func:`read_at_token`; ``batch_size``
    rows and ``token_budget`` token slots at most).
    """
    keys, values, tokens = read_prompt_kv(model, tokenizer, pair_texts(pairs), token_offset=token_offset,
                                          batch_size=batch_size, token_budget=token_budget, progress=progress)
    metadata = VectorMetadata(
        model_id=model_id(model),
        fingerprint=model_fingerprint(model),
        token_offset=token_offset,
        token_texts=sorted(set(tokens)),
        n_pairs=len(pairs),
    )
    return SteeringVector(pair_mean_difference(keys), pair_mean_difference(values), metadata)
