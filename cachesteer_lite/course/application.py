"""Checkers for notebook 4, "Applying the vector: one edit, then plain generation"."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.generation import Completion
from ..core.steering import generate
from ..core.vectors import SteeringVector
from .feedback import Feedback, checker, close, correct, wrong

# An answer that opens with its choice ("C: ...", "(C) ...", "C. ..."), as the notebook's right-hand panel counts.
LETTER_FIRST = re.compile(r"^\s*\(?[A-E]\s*[:.)]")
CHECK_TOKENS = 16  # how many tokens of each answer a checker regenerates (greedy, so they must agree exactly)


def cut_off_fractions(sweep: Mapping[float, Sequence[Completion]], max_new_tokens: int) -> dict[float, float]:
    """For every coefficient of the sweep, the share of answers that reached the token budget (were cut off)."""
    return {c: sum(x.n_tokens >= max_new_tokens for x in completions) / len(completions)
            for c, completions in sweep.items()}


@checker("answer_1 = a dict {c: the fraction of the answers at that coefficient that reached MAX_NEW_TOKENS}, "
         "one entry per coefficient of `sweep`")
def check_cut_off(answer: Mapping[float, float], sweep: Mapping[float, Sequence[Completion]],
                  max_new_tokens: int) -> Feedback:
    """Exercise 1: the cut-off share per coefficient. Slips named: counts for fractions, the share that finished,
    a strict ``>`` (an answer never has more than ``max_new_tokens`` tokens), a missing coefficient."""
    expected = cut_off_fractions(sweep, max_new_tokens)
    if not isinstance(answer, Mapping):
        return wrong("give a dict {c: fraction}, one entry per key of `sweep` (a dict comprehension over "
                     "sweep.items() makes one)")
    if set(answer) != set(expected):
        return wrong(f"give one entry per coefficient of `sweep`: {sorted(expected)}, not {sorted(answer)}")
    got = {c: float(answer[c]) for c in expected}
    counts = {c: expected[c] * len(sweep[c]) for c in expected}
    if all(close(got[c], expected[c], 1e-6) for c in expected):
        full = [c for c in expected if expected[c] == 1]
        note = (f"at c = {', '.join(f'{c:g}' for c in full)} every answer was cut off, so the mean lengths of the "
                "figure are lower bounds there" if full else "every mean length with a fraction above 0 is a "
                "lower bound")
        return correct(", ".join(f"c={c:g}: {expected[c]:.0%}" for c in sorted(expected)) + f"; {note}")
    if any(expected.values()) and all(close(got[c], counts[c], 1e-6) for c in expected):
        return wrong("these are counts: divide each by the number of answers at that coefficient")
    if all(close(got[c], 1 - expected[c], 1e-6) for c in expected):
        return wrong("this is the share that *finished* before the cap; the question asks for the share cut off")
    if any(expected.values()) and not any(got.values()):
        return wrong(f"an answer never has more than MAX_NEW_TOKENS = {max_new_tokens} tokens, so `>` counts none: "
                     "use `>=`")
    return wrong("per coefficient, count the completions whose n_tokens reached MAX_NEW_TOKENS and divide by the "
                 "number of completions")


def letter_first(completions: Sequence[Completion]) -> int:
    """How many answers open with their choice letter."""
    return sum(bool(LETTER_FIRST.match(c.text)) for c in completions)


def mean_tokens(completions: Sequence[Completion]) -> float:
    return sum(c.n_tokens for c in completions) / len(completions)


def describe(completions: Sequence[Completion], max_new_tokens: int) -> str:
    """Mean length, how many were cut off and how many open with a letter, in one phrase."""
    capped = sum(c.n_tokens >= max_new_tokens for c in completions)
    return (f"{mean_tokens(completions):.1f} tokens on average, {capped} of {len(completions)} at the cap, "
            f"{letter_first(completions)} opening with a letter")


def same_texts(first: Sequence[Completion], second: Sequence[Completion]) -> bool:
    return len(first) == len(second) and all(a.text == b.text for a, b in zip(first, second, strict=True))


def starts_like(answer: Completion, prefix: Completion, n_tokens: int) -> bool:
    """Whether ``answer`` is consistent with the first ``n_tokens`` tokens that greedy decoding produced."""
    if prefix.n_tokens < n_tokens:  # that answer ended (EOS) within the checked tokens: it must be the same
        return answer.text == prefix.text and answer.n_tokens == prefix.n_tokens
    # A character cut between two tokens decodes as U+FFFD at the end of the prefix: compare what precedes it.
    return answer.n_tokens >= n_tokens and answer.text.startswith(prefix.text.rstrip("\ufffd"))


def mismatch(answer: Sequence[Completion], model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
             prompts: Sequence[str], vector: SteeringVector, c_keys: float, c_values: float,
             max_new_tokens: int, others: Mapping[str, tuple[Sequence[Completion], str]]) -> str | None:
    """None when ``answer`` is the greedy run of ``cs.generate`` with these settings; else what to look at.

    Only the first :data:`CHECK_TOKENS` tokens of each answer are regenerated (same prompts, so the same batches and
    the same numbers as the learner's call). ``others`` are runs the notebook already has, each with the hint to give
    when the answer is that run instead.
    """
    answer = list(answer)
    if len(answer) != len(prompts):
        return f"give one completion per prompt: {len(prompts)}, not {len(answer)} (keep the list cs.generate returns)"
    if any(not isinstance(c.text, str) or c.n_tokens > max_new_tokens for c in answer):
        return f"generate at most max_new_tokens=MAX_NEW_TOKENS ({max_new_tokens}) tokens, as the sweep did"
    n_tokens = min(CHECK_TOKENS, max_new_tokens)
    prefixes = generate(model, tokenizer, prompts, vector, c_keys=c_keys, c_values=c_values,
                        max_new_tokens=n_tokens, progress=False)
    if all(starts_like(a, p, n_tokens) for a, p in zip(answer, prefixes, strict=True)):
        return None
    for run, hint in others.values():
        if same_texts(answer, run):
            return hint
    return (f"not the greedy answers with c_keys={c_keys:g} and c_values={c_values:g}: call cs.generate(model, "
            f"tokenizer, prompts, vector, c_keys={c_keys:g}, c_values={c_values:g}, max_new_tokens=MAX_NEW_TOKENS, "
            "progress=False), without sampling settings")


@checker("answer_2 = the list of completions that cs.generate returns for `prompts` with c_keys=1.0 and c_values=0.0")
def check_key_steering(answer: Sequence[Completion], model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       prompts: Sequence[str], vector: SteeringVector, *, value_steered: Sequence[Completion],
                       offset_only: Sequence[Completion], max_new_tokens: int, c_keys: float = 1.0,
                       c_values_shown: float = 6.0) -> Feedback:
    """Exercise 2: steer the keys instead of the values. ``value_steered`` is the notebook's run at
    ``c_values_shown`` and ``offset_only`` its c = 0 run; the verdict compares the key-steered answers with both."""
    others = {
        "values": (value_steered, f"these are the value-steered answers (c_values={c_values_shown:g}): set "
                                  f"c_values=0.0 and move the keys with c_keys={c_keys:g}"),
        "nothing": (offset_only, f"these are the c = 0 answers (offset token, nothing added): pass c_keys={c_keys:g}"),
    }
    problem = mismatch(answer, model, tokenizer, prompts, vector, c_keys, 0.0, max_new_tokens, others)
    if problem is not None:
        return wrong(problem)
    answer = list(answer)
    unchanged = sum(a.text == b.text for a, b in zip(answer, offset_only, strict=False))
    return correct(f"keys at c_keys={c_keys:g}: {describe(answer, max_new_tokens)}; values at "
                   f"c_values={c_values_shown:g}: {describe(value_steered, max_new_tokens)}. {unchanged} of "
                   f"{len(answer)} key-steered answers are word for word the c = 0 answers")


@checker("answer_3 = the list of completions that cs.generate returns for `prompts` with c_values=-4.0")
def check_negative_steering(answer: Sequence[Completion], model: PreTrainedModel,
                            tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], vector: SteeringVector, *,
                            plain: Sequence[Completion], positive: Sequence[Completion], max_new_tokens: int,
                            c_values: float = -4.0) -> Feedback:
    """Exercise 3: the vector subtracted. ``plain`` is the notebook's unsteered run and ``positive`` its run at
    ``+c_values`` (the sign is the usual slip)."""
    others = {
        "positive": (positive, f"these are the answers at c_values=+{-c_values:g}: the minus sign is missing"),
        "plain": (plain, f"these are the unsteered answers: pass the vector and c_values={c_values:g}"),
    }
    problem = mismatch(answer, model, tokenizer, prompts, vector, 0.0, c_values, max_new_tokens, others)
    if problem is not None:
        return wrong(problem)
    answer = list(answer)
    shorter = "shorter" if mean_tokens(answer) < mean_tokens(plain) else "not shorter"
    return correct(f"c_values={c_values:g}: {describe(answer, max_new_tokens)}; unsteered: "
                   f"{describe(plain, max_new_tokens)}; c_values=+{-c_values:g}: {describe(positive, max_new_tokens)}."
                   f" Subtracting the vector made the answers {shorter} than the unsteered ones on average")
