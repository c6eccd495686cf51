"""Differentiable cache augmentation (Liu et al., 2024, arXiv 2412.17747): a coprocessor reads a frozen decoder's
KV cache and writes latent embeddings after it; trained with a look-ahead loss, next to a pause-token control.

The paper publishes no code. This subpackage's choices, module by module (:mod:`augmenters`, :mod:`lookahead`,
:mod:`texts`, :mod:`training`, :mod:`generation`; the command line in :mod:`cli`):

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

Importing the subpackage registers the evaluation method ``cache_augmentation`` with the runner (:mod:`method`).
"""

from __future__ import annotations

from ..core.deviations import Deviation
from ..runs.methods import register_method
from .augmenters import Augmenter, Coprocessor, PauseTokens
from .generation import augmented_cache, augmented_generate
from .lookahead import AheadPerplexity, lookahead_losses, make_batch, paired_difference, perplexity_by_ahead_position
from .method import CACHE_AUGMENTATION
from .texts import training_texts
from .training import TrainConfig, checkpoint_state, load_augmenter, train

register_method(CACHE_AUGMENTATION)

# How this toy reproduction differs from Liu et al.'s setting.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation("Decoder", "Gemma-2 2B", "SmolLM2-135M-Instruct (Q4_1 weights dequantised to fp32)",
              "a far smaller model, near the floor of GSM8K (about 2–3%)"),
    Deviation("Coprocessor", "a copy of the decoder, fine-tuned (fully or with LoRA)",
              "LoRA rank 8 on every projection of a copy that shares the decoder's frozen weights (`lora_rank=None` "
              "gives a full copy)", "about 2.4 million trainable values instead of the decoder's size"),
    Deviation("Training text and budget", "pretraining text, at the scale of a pretraining run",
              "GSM8K solutions and the train questions with the shipped traces (6,763 texts cut at 96 tokens), 200 "
              "steps of 8 split points on a CPU",
              "the coprocessor has barely started to learn; the stored results measure that early stage"),
    Deviation("Latents and ahead tokens", "$N_L$ up to 64",
              "$N_L$ = 4 and 16, $N_A$ = 8; 64 did not fit the CPU budget",
              "the table has no $N_L$ = 64 row"),
    Deviation("Latents' scale", "not described",
              "the coprocessor's outputs after its final norm, rescaled to the mean norm of the decoder's token "
              "embeddings, times one trained gain",
              "without it SmolLM2's latents would start about 15 times longer than any input embedding"),
    Deviation("Control", "none",
              "pause tokens: the same number of trainable embeddings fed to the decoder directly, same positions, "
              "loss, seed and data order",
              "tells a benefit of reading the cache apart from a benefit of extra trainable positions"),
    Deviation("GSM8K evaluation", "accuracy with 64 latents, about 10 points above the plain model",
              "zero-shot chat prompt, greedy, 256 new tokens, the first 300 test questions, one augmentation by the "
              "$N_L$ = 16 coprocessor",
              "the paper's +10 points cannot be expected of this model and budget; the stored comparison is paired "
              "(exact McNemar)"),
)

__all__ = [
    "DEVIATIONS",
    "AheadPerplexity",
    "Augmenter",
    "Coprocessor",
    "PauseTokens",
    "TrainConfig",
    "augmented_cache",
    "augmented_generate",
    "checkpoint_state",
    "load_augmenter",
    "lookahead_losses",
    "make_batch",
    "paired_difference",
    "perplexity_by_ahead_position",
    "train",
    "training_texts",
]
