"""The Colab page's GPU estimates: the arithmetic behind each cell of its table."""

from __future__ import annotations

import pytest

from cachesteer_lite.runs import budget


def test_memory_is_weights_plus_one_batch_of_cache_plus_the_context() -> None:
    smol = budget.ARCHITECTURES["SmolLM2-360M-Instruct"]
    # 362M half-precision weights; 2 (K and V) x 32 layers x 5 heads x 64 dims x 2 bytes per token.
    expected = (362e6 * 2 + 2 * 32 * 5 * 64 * 2 * 32 * 1068) / 1e9 + budget.CONTEXT_GB
    assert budget.memory_gb(smol, 32) == pytest.approx(expected)
    assert budget.memory_gb(smol, 32, tokens=2000) > budget.memory_gb(smol, 32)


def test_a_model_too_large_for_a_gpu_gets_a_smaller_batch_or_none() -> None:
    llama8b, t4 = budget.ARCHITECTURES["Llama-3.1-8B-Instruct"], budget.GPUS["T4 (16 GB)"]
    assert budget.largest_batch(llama8b, t4) == 0  # 16 GB of weights alone
    assert budget.largest_batch(llama8b, budget.GPUS["L4 (24 GB)"]) in (1, 2, 4, 8, 16, 32)
    assert "does not fit" in budget.gpu_table()


def test_the_table_takes_longer_for_bandwidth_bound_models_and_smaller_batches() -> None:
    t4 = budget.GPUS["T4 (16 GB)"]
    small, large = budget.ARCHITECTURES["Qwen2-0.5B-Instruct"], budget.ARCHITECTURES["Phi-4-mini-instruct"]
    batches = sum(-(-n // 32) for n in budget.EVAL_SPLIT_SIZES.values()) * 4
    assert budget.table_hours(small, t4, 32) == pytest.approx(batches * 768 * budget.STEP_OVERHEAD_S / 3600)
    assert budget.table_hours(large, t4, 32) > budget.table_hours(small, t4, 32)
    assert budget.table_hours(small, t4, 8) > budget.table_hours(small, t4, 32)
