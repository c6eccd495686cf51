"""Checkers for notebook 3, "Extracting a steering vector".

Reading a prompt's cache costs seconds per prompt on a CPU, so the checkers avoid it: exercise 1 needs only the
tensors the notebook read, exercise 2 uses the fact the exercise is about (layer 0's value at a token depends on
that token alone, so a one-token forward pass gives it), and exercise 3 recomputes the neighbours from sentence
embeddings of a dozen questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.cache import prefill, read_position
from ..core.prompts import Demonstration, contrastive_pair, encode
from ..core.vectors import pair_mean_difference
from ..tasks.contrastive import ContrastiveSet, nearest_neighbours
from ..tasks.embeddings import EMBEDDER_INSTALL, embed
from .feedback import Feedback, checker, correct, wrong

OTHER_OFFSET = -2  # exercise 2: the token before the last one


def _matches(answer: torch.Tensor, expected: torch.Tensor) -> bool:
    return answer.shape == expected.shape and torch.allclose(answer, expected, rtol=1e-4, atol=1e-5)


@checker("answer_1 = (key_vector, value_vector): mean of the positive rows minus mean of the negative rows")
def check_difference_of_means(answer: tuple[Any, Any], keys: torch.Tensor, values: torch.Tensor,
                              n_pairs: int) -> Feedback:
    """Exercise 1. Slips with their own hint: negative minus positive, (values, keys), a sum, the wrong axis."""
    key_answer, value_answer = answer
    got = (torch.as_tensor(key_answer).float(), torch.as_tensor(value_answer).float())
    expected = (keys[:n_pairs].mean(0) - keys[n_pairs:].mean(0), values[:n_pairs].mean(0) - values[n_pairs:].mean(0))
    shape = tuple(keys.shape[1:])
    if any(tuple(tensor.shape) != shape for tensor in got):
        return wrong(f"each tensor should have the shape of one row, {shape} = [layer, kv_head, head_dim]: take the "
                     "mean over dim 0 (the prompts), once for rows [:N_PAIRS] and once for rows [N_PAIRS:]")
    if all(_matches(g, e) for g, e in zip(got, expected, strict=True)):
        by_pairs = (pair_mean_difference(keys), pair_mean_difference(values))
        gap = max(float((g - e).abs().max()) for g, e in zip(got, by_pairs, strict=True))
        same = "bit for bit" if gap == 0 else f"up to float rounding (largest difference {gap:.1g})"
        return correct("the same vector as the mean of the differences, " + same + ": the mean is linear, so "
                       "mean(positive) - mean(negative) = mean(positive - negative)")
    if _matches(got[0], expected[1]) and _matches(got[1], expected[0]):
        return wrong("keys and values are swapped: answer_1 = (key_vector, value_vector)")
    if all(_matches(g, -e) for g, e in zip(got, expected, strict=True)):
        return wrong("the sign is flipped: positive minus negative (rows [:N_PAIRS] are the positive prompts)")
    if n_pairs > 1 and all(_matches(g, n_pairs * e) for g, e in zip(got, expected, strict=True)):
        return wrong(f"that is a sum over the {n_pairs} pairs: take the mean (.mean(0)), not the sum")
    right = [name for name, g, e in zip(("keys", "values"), got, expected, strict=True) if _matches(g, e)]
    if right:
        return wrong(f"the {right[0]} are right; compute the other tensor the same way")
    return wrong("subtract the mean of rows [N_PAIRS:] (the negative prompts) from the mean of rows [:N_PAIRS] (the "
                 "positive ones), for `keys` and for `values`")


def token_at(tokenizer: PreTrainedTokenizerBase, text: str, offset: int) -> int:
    """The id of the token at ``offset`` (from the end) of ``text`` as the library tokenises a prompt."""
    return int(encode(tokenizer, [text]).input_ids[0, offset])


@torch.no_grad()
def layer0_value(model: PreTrainedModel, token: int) -> torch.Tensor:
    """Layer 0's cached value of ``token``, ``[n_kv_heads, head_dim]``, from a one-token forward pass.

    Before the first attention layer nothing mixes tokens, and values are not rotated by position, so this is the
    value of that token at any position of any prompt (up to float rounding: other shapes, other kernels).
    """
    ids = torch.tensor([[token]], device=model.device)
    return read_position(prefill(model, ids, torch.ones_like(ids)), -1)[1][0, 0].float().cpu()


@checker("answer_2 = (token, largest |layer-0 value difference|): the token at token_offset=-2 as text, and a number")
def check_other_token(answer: tuple[Any, Any], model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      pairs: Sequence[tuple[str, str]]) -> Feedback:
    """Exercise 2, for the (positive, negative) ``pairs`` the learner read at token_offset=-2. Slips with their own
    hint: the default offset (the last token), a word instead of its token, keys or another layer."""
    token, largest = answer
    if isinstance(token, int) and not isinstance(token, bool):
        return wrong("give the token as text, as read_prompt_kv returns it (its third result), not its id")
    if not isinstance(token, str):
        return wrong(f"the first element should be the token's text, not a {type(token).__name__}")
    largest = float(largest)
    ids = [(token_at(tokenizer, p, OTHER_OFFSET), token_at(tokenizer, n, OTHER_OFFSET)) for p, n in pairs]
    names = sorted({tokenizer.decode([i]) for pair in ids for i in pair})
    last = sorted({tokenizer.decode([token_at(tokenizer, text, -1)]) for pair in pairs for text in pair})
    expected = max(float((layer0_value(model, p) - layer0_value(model, n)).abs().max()) if p != n else 0.0
                   for p, n in ids)
    if token not in names:
        if token in last:
            return wrong(f"{token!r} is the last token, where the vector is read: pass token_offset=-2 to "
                         "read_prompt_kv to read the one before")
        if token.strip() and any(name.strip() and name.strip() in token for name in names):
            return wrong(f"{token!r} is a word, but the tokenizer splits it: the token at offset -2 is only part of "
                         "it. Print the tokens read_prompt_kv returns (its third result)")
        return wrong("that is not the token at offset -2: print the tokens read_prompt_kv returns with "
                     "token_offset=-2 (its third result)")
    if abs(largest - expected) > 1e-4 * max(1.0, expected):
        if expected == 0.0:
            return wrong(f"the token is right, but layer 0's value difference at it is exactly 0, not {largest:.3g}: "
                         "did you take the keys (rotated by position), another layer than 0, or rows that are not a "
                         "positive and its own negative? (read two positives then their two negatives; rows [:2] "
                         "minus rows [2:], values[:, 0])")
        return wrong(f"the token is right; the largest |layer-0 value difference| is not {largest:.3g}: compare each "
                     "positive with its own negative, values at layer 0 (values[:, 0])")
    tail = encode(tokenizer, [pairs[0][0]]).input_ids[0, -3:].tolist()
    pieces = [tokenizer.decode([i]) for i in tail]
    if expected == 0.0:
        return correct(f"the prompts end in {''.join(pieces)!r}, tokenised as {pieces}: {token!r} is the token "
                       "before the last one, the same in both prompts of every pair, so layer 0's value difference "
                       "is exactly 0 again: layer 0's value depends on the token alone")
    return correct(f"{token!r} differs between the prompts of a pair here, so layer 0's values differ too (largest "
                   f"|difference| {expected:.3g})")


def mean_similarity(embeddings: torch.Tensor, neighbours: Sequence[Sequence[int]]) -> float:
    """Mean cosine similarity between each question's embedding and those of its demonstrations."""
    return float(torch.stack([embeddings[i] @ embeddings[j] for i, chosen in enumerate(neighbours)
                              for j in chosen]).mean())


@checker('answer_3 = the ContrastiveSet that build_contrastive_set(..., selection="nearest") returns')
def check_nearest_set(answer: ContrastiveSet, tokenizer: PreTrainedTokenizerBase, demos: Sequence[Demonstration],
                      random_set: ContrastiveSet) -> Feedback:
    """Exercise 3: the nearest-neighbour set for the same items as ``random_set`` (``demos`` is their pool). The
    neighbours are recomputed from the pool's all-MiniLM-L6-v2 embeddings; no prompt is read."""
    if isinstance(answer, list):
        return wrong("put the whole ContrastiveSet in answer_3 (what build_contrastive_set returns), not its .pairs")
    if not isinstance(answer, ContrastiveSet):
        return wrong(f"expected the ContrastiveSet that build_contrastive_set returns, got a {type(answer).__name__}")
    if answer.settings.get("selection") != "nearest":
        return wrong(f"this set was built with selection={answer.settings.get('selection')!r}: pass "
                     "selection=\"nearest\"")
    for name in ("task", "n_pairs", "n_demonstrations", "cot_prefix", "style"):
        if answer.settings.get(name) != random_set.settings[name]:
            return wrong(f"use the same {name} as the random set ({random_set.settings[name]!r}, not "
                         f"{answer.settings.get(name)!r}), so that the two sets differ only in how the demonstrations "
                         "are chosen")
    try:
        embeddings = embed([demo.question for demo in demos])
    except ModuleNotFoundError:
        return wrong(f"checking this needs the embedding model: {EMBEDDER_INSTALL}")
    expected = nearest_neighbours(embeddings, int(random_set.settings["n_demonstrations"]))
    if answer.demonstrations != expected:
        return wrong("the demonstrations are not each item's nearest neighbours among the same items: build the set "
                     "with build_contrastive_set from the same trace file (traces=TRACES)")
    pairs = [contrastive_pair(tokenizer, [demos[j] for j in chosen], demos[i].question,
                              bool(random_set.settings["cot_prefix"])) for i, chosen in enumerate(expected)]
    if answer.pairs != pairs:
        return wrong("the demonstrations are right but the prompts differ from the notebook's: use the same trace "
                     "file (traces=TRACES) and tokenizer")
    shared = sum(len(set(a) & set(b)) for a, b in zip(expected, random_set.demonstrations, strict=True))
    total = sum(len(chosen) for chosen in expected)
    return correct(f"each question's demonstrations now have a mean cosine similarity of "
                   f"{mean_similarity(embeddings, expected):.2f} to it (random: "
                   f"{mean_similarity(embeddings, random_set.demonstrations):.2f}), and {shared} of the {total} "
                   "demonstrations are the same as in the random set. Read these pairs and redraw the agreement "
                   "figure to compare")
