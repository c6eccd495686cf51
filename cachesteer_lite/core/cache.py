"""Read and edit a transformer's KV cache through the transformers 5.x layer API.

Every access goes through ``cache.layers[i].keys`` / ``.values`` (shape ``[batch, n_kv_heads, seq, head_dim]``),
which is the same for full-attention (``DynamicLayer``) and sliding-window (``DynamicSlidingWindowLayer``) layers:
no per-model code. Quantized caches store the prefill quantized, so an edit of ``.keys`` would be lost or wrong;
they are refused.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import BaseQuantizedLayer, Cache, CacheLayerMixin, QuantizedCache


class UnsupportedCacheError(TypeError):
    """The cache cannot be edited in place (for example a quantized cache)."""


def new_cache(model: PreTrainedModel) -> DynamicCache:
    """An empty dynamic cache whose layer classes follow the model's config (sliding windows included)."""
    return DynamicCache(config=model.config)


def editable_layers(cache: Cache) -> list[CacheLayerMixin]:
    """The cache's layers, after checking that their ``keys``/``values`` tensors can be edited in place."""
    if isinstance(cache, QuantizedCache) or any(isinstance(layer, BaseQuantizedLayer) for layer in cache.layers):
        raise UnsupportedCacheError(
            "quantized KV caches keep the prompt in quantized form, so a steering edit would be lost; "
            "use a DynamicCache (the default) for cache steering"
        )
    for index, layer in enumerate(cache.layers):
        if getattr(layer, "keys", None) is None or getattr(layer, "values", None) is None:
            raise UnsupportedCacheError(f"cache layer {index} ({type(layer).__name__}) holds no keys/values yet")
    return list(cache.layers)


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: each row counts 0, 1, ... from its first real token.

    A plain forward pass numbers positions by column, which shifts every left-padded row; ``generate``
    computes positions this way itself, so the prefill must do the same to match it.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def prefill(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> DynamicCache:
    """Run the prompt through the model once and return the filled cache.

    The ids and mask are moved to the model's device first, so callers may pass the CPU tensors of ``encode``.
    """
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    cache = new_cache(model)
    model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=left_padded_positions(attention_mask),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,  # only the cache is wanted; skip the vocabulary projection of every other token
    )
    return cache


def read_position(cache: Cache, position: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of every layer at one cache position: two tensors ``[n_layers, batch, n_kv_heads, head_dim]``.

    ``position`` counts from the end (-1 is the newest entry), which addresses the same token in full and
    sliding-window layers, since a sliding layer keeps only the most recent tokens. Both are on the device of the
    first layer: with ``device_map="auto"`` the layers may live on different devices.
    """
    layers = editable_layers(cache)
    device = layers[0].keys.device
    keys = torch.stack([layer.keys[:, :, position, :].to(device) for layer in layers])
    values = torch.stack([layer.values[:, :, position, :].to(device) for layer in layers])
    return keys, values


def add_at_position(
    cache: Cache,
    layer_ids: Iterable[int],
    key_deltas: torch.Tensor,
    value_deltas: torch.Tensor,
    position: int = -1,
) -> None:
    """Add ``key_deltas[l]`` / ``value_deltas[l]`` (each ``[n_kv_heads, head_dim]``) in place at one position.

    The same delta is added to every batch row. Each delta is cast to its layer's own device and dtype (a
    float32 CPU vector edits a bfloat16 cache on a GPU; with ``device_map="auto"`` each layer may sit on another
    GPU). Edits persist into decoding: ``update`` concatenates new tokens onto these tensors.
    """
    layers = editable_layers(cache)
    for layer_id in layer_ids:
        layer = layers[layer_id]
        layer.keys[:, :, position, :] += key_deltas[layer_id].to(layer.keys.device, layer.keys.dtype)
        layer.values[:, :, position, :] += value_deltas[layer_id].to(layer.values.device, layer.values.dtype)
