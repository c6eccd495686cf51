"""What the paper's protocol asks of a GPU: memory and time per model, computed from the models' shapes.

These are estimates, not measurements, and the book's Colab page says so beside every number (no GPU has been
lent to this project yet). Memory is the weights plus the KV cache of one batch at its longest plus a fixed
allowance for the CUDA context and activations. Time counts decoding steps: the paper's protocol answers every
question of the four evaluation splits once per method, in batches, and a batch runs until its longest answer
ends, which we take to be always the 768-token cap (an upper bound: unsteered answers often stop earlier). A
decoding step of ``model.generate`` costs at least :data:`STEP_OVERHEAD_S` (Python and kernel launches, what
small models are bound by) and at least the time to read the weights once at :data:`BANDWIDTH_USE` of the GPU's
memory bandwidth (what large models are bound by).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .paper import PAPER_MAX_NEW_TOKENS

EVAL_SPLIT_SIZES: dict[str, int] = {"gsm8k": 1319, "arc_challenge": 1172, "csqa": 1221, "piqa": 1838}
TABLE_METHODS = 4  # baseline, CoT, cache steering, cache steering + CoT
PROMPT_TOKENS = 300  # a generous prompt: the longest evaluation prompts of the four tasks are shorter
STEP_OVERHEAD_S = 0.03
BANDWIDTH_USE = 0.6
CONTEXT_GB = 1.0  # the CUDA context, activations and allocator slack


class Architecture(NamedTuple):
    """What the estimates need of a model: its parameters and the shape of its KV cache."""

    parameters: float
    layers: int
    kv_heads: int
    head_dim: int


class GPU(NamedTuple):
    """A GPU as the estimates see it: memory, bandwidth, and the half-precision type it computes in."""

    memory_gb: float
    bandwidth_gb_s: float
    dtype: str


# From the models' config.json files on the hub (parameters rounded to three digits).
ARCHITECTURES: dict[str, Architecture] = {
    "SmolLM2-135M-Instruct": Architecture(135e6, 30, 3, 64),
    "SmolLM2-360M-Instruct": Architecture(362e6, 32, 5, 64),
    "Qwen2-0.5B-Instruct": Architecture(494e6, 24, 2, 64),
    "Llama-3.2-1B-Instruct": Architecture(1.24e9, 16, 8, 64),
    "Llama-3.2-3B-Instruct": Architecture(3.21e9, 28, 8, 128),
    "Phi-4-mini-instruct": Architecture(3.84e9, 32, 8, 128),
    "Llama-3.1-8B-Instruct": Architecture(8.03e9, 32, 8, 128),
}
# Colab's GPUs and a larger one. The T4 has no bfloat16: it runs float16.
GPUS: dict[str, GPU] = {
    "T4 (16 GB)": GPU(16, 320, "float16"),
    "L4 (24 GB)": GPU(24, 300, "bfloat16"),
    "A100 (40 GB)": GPU(40, 1555, "bfloat16"),
    "H100 (80 GB)": GPU(80, 3350, "bfloat16"),
}


def memory_gb(model: Architecture, batch_size: int, tokens: int = PROMPT_TOKENS + PAPER_MAX_NEW_TOKENS,
              bytes_per_value: int = 2) -> float:
    """Peak GPU memory of generating ``batch_size`` answers of ``tokens`` tokens in half precision."""
    weights = model.parameters * bytes_per_value
    cache = 2 * model.layers * model.kv_heads * model.head_dim * bytes_per_value * batch_size * tokens
    return (weights + cache) / 1e9 + CONTEXT_GB


def largest_batch(model: Architecture, gpu: GPU, at_most: int = 32) -> int:
    """The largest batch (up to the paper's 32, halving) whose estimate fits the GPU; 0 when none does."""
    batch = at_most
    while batch >= 1 and memory_gb(model, batch) > gpu.memory_gb:
        batch //= 2
    return batch


def table_hours(model: Architecture, gpu: GPU, batch_size: int) -> float:
    """Hours for the whole table (four methods, the four whole evaluation splits) at ``batch_size``."""
    batches = sum(math.ceil(n / batch_size) for n in EVAL_SPLIT_SIZES.values()) * TABLE_METHODS
    step_s = max(STEP_OVERHEAD_S, model.parameters * 2 / 1e9 / (gpu.bandwidth_gb_s * BANDWIDTH_USE))
    return batches * PAPER_MAX_NEW_TOKENS * step_s / 3600


def gpu_table() -> str:
    """The Colab page's table: per model and GPU, the batch that fits, its memory and the table's hours."""
    rows = ["| model | " + " | ".join(GPUS) + " |", "|---|" + "---|" * len(GPUS)]
    for name, model in ARCHITECTURES.items():
        cells = []
        for gpu in GPUS.values():
            batch = largest_batch(model, gpu)
            cells.append("does not fit" if batch == 0 else
                         f"batch {batch}: {memory_gb(model, batch):.1f} GB, {table_hours(model, gpu, batch):.1f} h")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
