"""Reading and editing the KV cache through ``cache.layers[i].keys/.values``."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer, QuantizedCache

from cachesteer_lite import UnsupportedCacheError, add_at_position, new_cache, prefill, read_position
from cachesteer_lite.core.cache import left_padded_positions

from conftest import tiny_model


def test_left_padded_positions_count_from_the_first_real_token():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert left_padded_positions(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_left_padded_prefill_equals_unpadded_prefill():
    model = tiny_model()
    ids = torch.randint(10, 1000, (1, 7))
    padded = torch.cat([torch.full((1, 3), 2), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 7, dtype=torch.long)], dim=1)
    alone_k, alone_v = read_position(prefill(model, ids, torch.ones_like(ids)), -1)
    padded_k, padded_v = read_position(prefill(model, padded, mask), -1)
    torch.testing.assert_close(padded_k, alone_k)
    torch.testing.assert_close(padded_v, alone_v)


def test_new_cache_follows_the_layer_types_of_the_config():
    layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
    model = tiny_model("gemma3_text", layer_types=layer_types, sliding_window=4)
    classes = [type(layer) for layer in new_cache(model).layers]
    assert classes == [DynamicSlidingWindowLayer, DynamicLayer, DynamicSlidingWindowLayer]


def test_edit_lands_at_one_position_of_the_chosen_layers_only():
    model = tiny_model()
    ids = torch.randint(10, 1000, (2, 6))
    mask = torch.ones_like(ids)
    before = prefill(model, ids, mask)
    after = prefill(model, ids, mask)
    key_deltas = torch.randn(3, 2, 16)
    value_deltas = torch.randn(3, 2, 16)
    add_at_position(after, [1, 2], key_deltas, value_deltas, position=-1)
    for layer_id, (old, new) in enumerate(zip(before.layers, after.layers, strict=True)):
        for name, deltas in (("keys", key_deltas), ("values", value_deltas)):
            change = getattr(new, name) - getattr(old, name)
            if layer_id == 0:
                assert change.abs().max() == 0
                continue
            torch.testing.assert_close(change[:, :, -1, :], deltas[layer_id].expand(2, -1, -1))
            assert change[:, :, :-1, :].abs().max() == 0


def test_quantized_cache_is_refused():
    model = tiny_model()
    cache = QuantizedCache(backend="fp8", config=model.config)
    with pytest.raises(UnsupportedCacheError, match="quantized"):
        read_position(cache)
    with pytest.raises(UnsupportedCacheError, match="quantized"):
        add_at_position(cache, [0], torch.zeros(3, 2, 16), torch.zeros(3, 2, 16))


def test_empty_cache_is_refused():
    with pytest.raises(UnsupportedCacheError, match="no keys"):
        read_position(new_cache(tiny_model()))
