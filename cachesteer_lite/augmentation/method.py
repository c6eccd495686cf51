"""Cache augmentation as an evaluation method of the runner: ``cache_augmentation``.

One augmentation at the end of each prompt by a trained coprocessor or pause-token control, read from the
checkpoint (or run folder) that the ``checkpoint`` option names. The run records which weights it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.generation import Completion
from ..files import sha256
from ..runs.config import EvalConfig
from ..runs.methods import Method, Prepared
from .generation import augmented_generate
from .training import checkpoint_state, load_augmenter


def _prepare(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    checkpoint, state = checkpoint_state(config.options["checkpoint"])
    augmenter = load_augmenter(model, checkpoint)

    def respond(prompts: Sequence[str], **kwargs: Any) -> list[Completion]:
        return augmented_generate(model, tokenizer, augmenter, prompts, progress=False, **kwargs)

    details = {"checkpoint": checkpoint.as_posix(), "step": state["step"], "augmenter": state["config"],
               "augmenter_sha256": sha256(checkpoint / "augmenter.safetensors")}
    return Prepared(respond, "", details)


CACHE_AUGMENTATION = Method(
    "cache_augmentation", "one augmentation at the end of the prompt by a trained coprocessor (or pause tokens)",
    False, (), _prepare, ("checkpoint",),
)
