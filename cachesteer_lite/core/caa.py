"""Activation steering (CAA), the paper's baseline (paper-reference section 4), with hooks written for transformers 5.

The vector for layer ``l`` is the mean (positive - negative) residual-stream output of decoder block ``l`` at one
token of the prompt (by default the last one), read from the same contrastive pairs as cache steering. At
inference a forward hook adds ``multiplier * vector[l]`` to the output of block ``l`` at the last position of a
forward pass. Three modes say which passes:

* ``"paper"``: every pass, with generation run with ``use_cache=False``; every step recomputes the whole
  sequence and only the newest token is steered (the paper's "continuous application").
* ``"cached"``: every new token, with the KV cache kept: the prompt's last token in the prefill, then each
  decoded token. Earlier tokens stay steered in the cache, so this is not the same computation as ``"paper"``.
* ``"one_shot"``: only the prompt's last token, in the prefill; decoding is untouched (the paper's latency
  benchmark).

The ``steering-vectors`` package the paper used pins ``transformers<5``, where decoder blocks returned tuples;
here blocks return a bare tensor, and the hooks accept both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache

from .cache import left_padded_positions
from .checks import finite_number, layer_index
from .generation import Completion, batched_completions, generation_settings
from .vector_files import VectorFileError, check_finite_shape, read_vector_files, write_vector_files
from .vectors import (
    VectorMetadata,
    check_shapes,
    fingerprint_shape,
    model_id,
    pair_mean_difference,
    pair_texts,
    read_at_token,
)

Mode = Literal["paper", "cached", "one_shot"]
MODES: tuple[str, ...] = get_args(Mode)

ACTIVATION_KIND = "activation"


def activation_fingerprint(model: PreTrainedModel) -> dict[str, int | str]:
    """The residual-stream shape an activation vector must match: layers and hidden size, plus the architecture."""
    config = model.config.get_text_config()
    return {
        "architecture": type(model).__name__,
        "n_layers": int(config.num_hidden_layers),
        "hidden_size": int(config.hidden_size),
    }


def decoder_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The model's decoder blocks, in order: ``layers`` (Llama, Gemma, Qwen) or ``h`` (GPT-2) of its decoder."""
    decoder = model.get_decoder()
    n_layers = activation_fingerprint(model)["n_layers"]
    for name in ("layers", "h"):
        blocks = getattr(decoder, name, None)
        if isinstance(blocks, nn.ModuleList) and len(blocks) == n_layers:
            return blocks
    raise TypeError(
        f"cannot find the {n_layers} decoder blocks of {type(model).__name__}: expected a `layers` or `h` "
        f"module list on {type(decoder).__name__}, the model's decoder"
    )


def _hidden(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states in a block's output: the output itself in transformers 5, its first item in older blocks.

    Taking ``output[0]`` of a bare tensor would silently pick the first batch row, hence the type check.
    """
    return output if isinstance(output, torch.Tensor) else output[0]


@contextmanager
def _forward_hooks(hooks: Sequence[tuple[nn.Module, Callable[..., Any]]]) -> Iterator[None]:
    """Register ``(module, hook)`` forward hooks (called with the block's kwargs) and always remove them."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class ActivationMetadata(VectorMetadata):
    """Where an activation vector came from; ``kind`` tells it apart from a key/value vector's metadata."""

    kind: str = ACTIVATION_KIND


@dataclass
class ActivationVector:
    """One residual-stream direction per decoder block, ``[n_layers, hidden_size]`` in float32."""

    directions: torch.Tensor
    metadata: ActivationMetadata

    def __post_init__(self) -> None:
        """Refuse directions whose shape is not the one the metadata's fingerprint gives, or that are not finite."""
        shape = fingerprint_shape(self.metadata.fingerprint, ("n_layers", "hidden_size"))
        check_finite_shape("an activation vector", "directions", self.directions, shape)

    def check_compatible(self, model: PreTrainedModel) -> None:
        """Raise IncompatibleVectorError unless the model has this vector's layer count and hidden size.

        As for key/value vectors, shapes decide and a different model name with the same shapes only warns.
        """
        ours = dict(zip(("n_layers", "hidden_size"), self.directions.shape, strict=True))
        check_shapes("activation vector", self.metadata.model_id, ours,
                     {k: int(activation_fingerprint(model)[k]) for k in ours}, model)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` and ``<path>.json`` (with the tensors' checksum); return both paths."""
        return write_vector_files(path, {"directions": self.directions}, self.metadata)

    @classmethod
    def load(cls, path: str | Path) -> ActivationVector:
        """Read a vector written by :meth:`save` (``path`` may name either file or their common stem), checking
        its files, checksum, tensors and metadata; VectorFileError says what is wrong."""
        tensors, metadata = read_vector_files(path, "an activation vector", ("directions",), ActivationMetadata,
                                              kind=ACTIVATION_KIND)
        try:
            return cls(tensors["directions"], metadata)
        except ValueError as error:
            raise VectorFileError(f"{path}: {error}") from None


@torch.no_grad()
def read_block_outputs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    token_offset: int = -1,
    batch_size: int = 16,
    token_budget: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, list[str]]:
    """Every decoder block's output at one token of each prompt, ``[n_texts, n_layers, hidden_size]``, plus the
    token read in each prompt.

    Batched like :func:`vectors.read_prompt_kv`: longest first, left padded, positions counted from each row's
    first real token, so a batch reads what one-by-one passes read. The outputs come from hooks on the blocks,
    not ``output_hidden_states``, whose last entry has the final norm applied: steering adds to the raw output.
    """
    blocks = decoder_blocks(model)
    read: dict[int, torch.Tensor] = {}

    def recorder(layer: int) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor | tuple) -> None:
            read[layer] = _hidden(output)[:, token_offset].to(model.device)  # blocks may sit on several devices

        return record

    def block_outputs(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        read.clear()
        input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=left_padded_positions(attention_mask),
              use_cache=False, logits_to_keep=1)  # only the hooks' reads are wanted
        return torch.stack([read[layer] for layer in range(len(blocks))], dim=1)  # [batch, layers, hidden]

    with _forward_hooks([(block, recorder(layer)) for layer, block in enumerate(blocks)]):
        return read_at_token(model, tokenizer, texts, block_outputs, token_offset=token_offset,
                             batch_size=batch_size, token_budget=token_budget, progress=progress,
                             desc="reading activations")


def extract_activation_vector(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 16,
    token_budget: int | None = None,
    token_offset: int = -1,
    progress: bool = True,
) -> ActivationVector:
    """Mean (positive - negative) decoder-block output at one token of each prompt, for every layer at once.

    ``pairs`` are the (positive, negative) prompt texts that :func:`vectors.extract_steering_vector` takes, for
    example from :func:`prompts.contrastive_pair`. ``token_offset`` counts from the end of each prompt.
    """
    outputs, tokens = read_block_outputs(
        model, tokenizer, pair_texts(pairs), token_offset=token_offset, batch_size=batch_size,
        token_budget=token_budget, progress=progress
    )
    metadata = ActivationMetadata(
        model_id=model_id(model),
        fingerprint=activation_fingerprint(model),
        token_offset=token_offset,
        token_texts=sorted(set(tokens)),
        n_pairs=len(pairs),
    )
    return ActivationVector(pair_mean_difference(outputs), metadata)


def _past_length(args: tuple, kwargs: dict, n_new: int, layer: int) -> int | None:
    """How many tokens the block's KV cache held before this pass; None when the pass runs without a cache.

    The cache is found by type, since blocks name it differently (``past_key_values``, ``layer_past``) and
    GPT-2 passes it positionally. It is read after the pass, when cache layer ``layer`` already counts the new
    tokens (sliding-window layers count every token seen, not only the ones they keep).
    """
    cache = next((value for value in (*args, *kwargs.values()) if isinstance(value, Cache)), None)
    return None if cache is None else cache.get_seq_length(layer) - n_new


def _steering_hook(mode: str, layer: int, delta: torch.Tensor) -> Callable[..., None]:
    """A forward hook that adds ``delta`` at the last position of the passes ``mode`` steers.

    The edit is in place, so every observer of the block's output (``output_hidden_states``, other hooks)
    sees the steered residual stream whatever order the hooks were registered in; ``delta`` is cast to the
    output's own device and dtype (a no-op when it already matches). A pass that contradicts
    the mode (a cache in ``"paper"``, none in the others) raises instead of steering something else.
    """

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor | tuple) -> None:
        hidden = _hidden(output)
        past = _past_length(args, kwargs, hidden.shape[1], layer)
        if mode == "paper" and past:
            raise RuntimeError("mode 'paper' recomputes the sequence at every step: generate with use_cache=False")
        if mode != "paper" and past is None:
            raise RuntimeError(f"mode {mode!r} steers through the KV cache: generate with use_cache=True")
        if mode == "one_shot" and past is not None and past > 0:
            return  # a decoding step: one-shot steering touched only the prefill
        hidden[:, -1] += delta.to(hidden.device, hidden.dtype)

    return hook


@contextmanager
def activation_steering(
    model: PreTrainedModel,
    vector: ActivationVector,
    layer: int,
    multiplier: float,
    mode: Mode = "paper",
) -> Iterator[None]:
    """Add ``multiplier * vector.directions[layer]`` to the output of decoder block ``layer`` while inside.

    ``mode`` picks the forward passes that are steered (see the module docstring); "paper" expects generation
    with ``use_cache=False``, the other two with the cache. The hook is removed on exit, exceptions included.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    blocks = decoder_blocks(model)
    layer = layer_index("layer", layer, len(blocks))
    multiplier = finite_number("multiplier", multiplier)
    vector.check_compatible(model)
    # On the model's device once; the hook moves it on only when the block sits elsewhere (device_map="auto").
    delta = (multiplier * vector.directions[layer]).to(model.device)
    with _forward_hooks([(blocks[layer], _steering_hook(mode, layer, delta))]):
        yield


def caa_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    vector: ActivationVector,
    *,
    layer: int,
    multiplier: float,
    mode: Mode = "paper",
    max_new_tokens: int = 256,
    batch_size: int = 16,
    progress: bool = True,
    **generate_kwargs,
) -> list[Completion]:
    """Answer every prompt with activation steering: the CAA counterpart of :func:`steering.generate`.

    Prompts are batched longest first with left padding and returned in the input order; completions hold
    only the new tokens. The mode decides ``use_cache`` (False for "paper"), so it cannot be passed.
    """
    for own in ("use_cache", "past_key_values"):
        if own in generate_kwargs:
            raise ValueError(f"activation steering sets {own!r} from the mode; do not pass it")
    settings = {**generation_settings(tokenizer, max_new_tokens, generate_kwargs), "use_cache": mode != "paper"}

    def new_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        sequences = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
        return sequences[:, input_ids.shape[1] :]

    with activation_steering(model, vector, layer, multiplier, mode):
        return batched_completions(model, tokenizer, prompts, new_tokens, extra_tokens=max_new_tokens,
                                   batch_size=batch_size, progress=progress)
