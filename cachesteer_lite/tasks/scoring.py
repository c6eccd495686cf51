"""Answer extraction and scoring, following the paper's protocol (paper-reference section 5) with its
scoring defects fixed (section 9, item 12).

Multiple choice (ARC, CSQA, PIQA):

1. The suffix "\\nSo the correct choice is" is appended to the transcript the model answered in (prompt,
   offset token if the method appends one, response) and the model continues for up to 10 greedy tokens.
2. The response, the suffix and that continuation are normalised and matched against :data:`MC_PATTERNS`
   in order: the first pattern with any match wins, and its last match gives the letter.
3. With no match, a text after the suffix that names several options or none is "[incorrect]"; anything
   else is "[invalid]" and, with forced choice on, gets the option letter whose first token has the highest
   next-token logit after the suffix.

GSM8K: the last number of the response, compared as a number with the gold answer (no suffix step).

**One rule for every method: the extraction step is never steered.** The continuation and the forced
choice run the plain model on the transcript text, whatever method produced the response, so that a
method's score measures its response and not a steered answer-extraction step. (The paper's activation-
steering runs kept their hook active during extraction; its cache-steering runs did not.)

Where this differs from the paper is listed in :data:`DEVIATIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.batching import reading_batches
from ..core.cache import left_padded_positions
from ..core.deviations import Deviation
from ..core.prompts import encode
from ..core.steering import generate

EXTRACTION_PROMPT = "So the correct choice is"
ANSWER_SUFFIX = "\n" + EXTRACTION_PROMPT
ANSWER_TOKENS = 10  # greedy tokens generated after the suffix, as in the paper
INVALID = "[invalid]"
INCORRECT = "[incorrect]"

_L = r"([A-E])"  # the paper's letter class; ARC's numeric labels are shown as letters (data.to_item)
_END = r"(?:\b|(?=[.,;:\s]|$))"
OPENING_LETTER = "X: at the start"  # the weakest pattern: a text that opens with a letter and a colon
# The paper's ordered answer patterns, applied to normalised text (see normalise_choice_text).
MC_PATTERNS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("the correct choice is X", rf"[Tt]he correct choice is:?\s*{_L}\b"),
        ("the correct answer is X", rf"[Tt]he correct answer is:?\s*{_L}\b"),
        (
            "the correct answer is ... X (one letter, no negation or list)",
            r"\b[Tt]he correct answer is:?\s*(?:(?!not|n't|incorrect|wrong|and|or|combination|all of|[,;]).){0,50}?"
            rf"\b{_L}\b(?![^A-E]*\b[A-E]\b)",
        ),
        ("the best answer is X", rf"\b[Tt]he best answer is:?\s*{_L}{_END}"),
        ("the correct choice is option X", rf"[Tt]he correct choice is option:?\s*{_L}{_END}"),
        ("the final answer is X", rf"\b[Tt]he final answer is:?\s*{_L}{_END}"),
        ("the answer is X", rf"[Tt]he answer is:?\s*{_L}\b"),
        ("final answer is X", rf"[Ff]inal answer is:?\s*{_L}{_END}"),
        ("the best answer is option X", rf"[Tt]he best answer is option:?\s*{_L}{_END}"),
        ("the correct choice is Choice X:", rf"[Tt]he correct choice is:?\s*(?:\n\s*)*Choice\s+{_L}\s*:"),
        ("Answer: X", rf"[Aa]nswer:\s*{_L}\b"),
        (OPENING_LETTER, rf"^{_L}\s*:"),
    )
)
# After the suffix, a text naming several options or none is wrong rather than unreadable.
_NO_SINGLE_CHOICE = re.compile(
    r"\b(none|no correct|no answer|no option|none of the (?:above|choices|options)|"
    r"(?:options?|choices?)\s+[A-E](?:\s*(?:,|or|and)\s*[A-E])+|[A-E](?:\s*(?:,|or|and)\s*[A-E])+|"
    r"either\s+[A-E]\s+or\s+[A-E]|combination of)\b",
    re.IGNORECASE,
)
# A number: optional sign (not a hyphen between digits), optional "$", digits with optional thousands
# separators, optional decimals. A sentence's final period is not a decimal point.
_NUMBER = re.compile(r"(?:(?<![\d.])-)?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

# Every place where scoring differs from the paper on purpose.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "GSM8K numbers",
        "last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)` with ',', '.' and '$' deleted: '$27.00' reads 2700, '18.' "
        "reads 18 only by luck",
        "last number, '$' and thousands commas dropped, a trailing period is punctuation, compared as a number: "
        "'$27.00' = 27 = '27.0'",
        "a correct answer written with cents or a decimal point is scored correct",
    ),
    Deviation(
        "End-of-text and other special tokens before the suffix",
        "only EOS/pad ids are stripped (and 128001 for Llama-3.2 only): Phi-4-mini's `<|end|>` and Llama-3.1's "
        "`<|end_of_text|>` runs stay before the suffix",
        "responses are decoded without special tokens for every model; the suffix follows the text",
        "the continuation reads the same kind of transcript for every model",
    ),
    Deviation(
        "Forced choice",
        "1-token generation restricted to the first tokens of 'A'..'E' and ' A'..' E' for every item",
        "argmax of the next-token logits over the first tokens of the item's own option letters (A-B for PIQA), "
        "ambiguous shared first tokens excluded",
        "an unreadable answer can only be forced to an option the item has",
    ),
    Deviation(
        "Extraction step for steering methods",
        "unsteered for cache steering, steered for activation steering (hook still active)",
        "never steered, for every method",
        "every method's score measures its response, not a steered answer-extraction step",
    ),
    Deviation(
        "Suffix continuation",
        "one item at a time on the generated token ids, with stop strings",
        "left-padded batches on the re-tokenised transcript text (greedy)",
        "faster; batched float32 numerics can flip a rare near-tie",
    ),
    Deviation(
        "Leading whitespace",
        "kept: a steered response's leading newline keeps the '^X:' pattern from ever matching",
        "stripped before matching",
        "steered answers that open with their letter are read like unsteered ones",
    ),
)


def normalise_choice_text(text: str) -> str:
    """The paper's preprocessing: newlines, hyphens and '**' to spaces, parentheses dropped, whitespace
    collapsed (and, here, the ends stripped)."""
    text = text.replace("\n", " ").replace("-", " ").replace("(", "").replace(")", "").replace("**", " ")
    return re.sub(r"\s+", " ", text).strip()


def match_choice(text: str) -> tuple[str, str]:
    """The letter a response gives, and how it was found: (letter, pattern name), or (INCORRECT,
    "several or no options") or (INVALID, "no match").

    ``text`` is the response followed by the suffix and its continuation. The first pattern of
    :data:`MC_PATTERNS` with any match wins; its last match gives the letter.
    """
    text = normalise_choice_text(text)
    for name, pattern in MC_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return matches[-1], name
    if EXTRACTION_PROMPT in text and _NO_SINGLE_CHOICE.search(text.split(EXTRACTION_PROMPT)[-1]):
        return INCORRECT, "several or no options"
    return INVALID, "no match"


def canonical_number(text: str) -> str | None:
    """A number written as in GSM8K answers ("1,000", "$27.00", "-3", "2.50") in canonical form
    ("1000", "27", "-3", "2.5"), or None when ``text`` is not such a number."""
    if not _NUMBER.fullmatch(text.strip()):
        return None
    try:
        value = Decimal(text.strip().replace("$", "").replace(",", ""))
    except InvalidOperation:
        return None
    value = value.normalize()
    return format(value if value != 0 else Decimal(0), "f")


def last_number(text: str) -> str | None:
    """The last number of ``text`` in canonical form, or None when it has none (how GSM8K answers are read)."""
    matches = _NUMBER.findall(text)
    return canonical_number(matches[-1]) if matches else None


def first_number(text: str) -> str | None:
    """The first number of ``text`` in canonical form, or None when it has none (a teacher's final answer line)."""
    match = _NUMBER.search(text)
    return canonical_number(match.group(0)) if match else None


@dataclass(frozen=True)
class Extraction:
    """The answer read from one response: the prediction (a letter, a canonical number, INVALID or
    INCORRECT), how it was found, the text it was read from, and whether it equals the gold answer."""

    prediction: str
    method: str
    text: str
    correct: bool


def score_number(response: str, gold: str) -> Extraction:
    """GSM8K: the response's last number against the gold number."""
    prediction = last_number(response)
    if prediction is None:
        return Extraction(INVALID, "no number", response, False)
    return Extraction(prediction, "last number", response, prediction == canonical_number(gold))


def letter_token_ids(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> dict[int, str]:
    """First-token id -> letter for "X" and " X" of every label; ids shared by two letters are left out.

    Raises ValueError when some label keeps no id of its own (a tokenizer whose letters all start with
    the same piece), since forced choice could not tell it from the others.
    """
    owners: dict[int, set[str]] = {}
    for label in labels:
        for form in (label, " " + label):
            ids = tokenizer(form, add_special_tokens=False).input_ids
            if ids:
                owners.setdefault(ids[0], set()).add(label)
    table = {token: next(iter(letters)) for token, letters in owners.items() if len(letters) == 1}
    lost = [label for label in labels if label not in table.values()]
    if lost:
        raise ValueError(f"option letter(s) {lost} share their first token with other letters in this tokenizer; "
                         "forced choice cannot tell them apart")
    return table


@torch.no_grad()
def forced_choices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    labels: Sequence[Sequence[str]],
    batch_size: int = 16,
) -> list[str]:
    """For each text, the option letter (of its own ``labels``) whose first token the model scores highest
    as the next token: the paper's force-choice fallback, read from the logits in one forward pass."""
    letters: dict[int, str] = {}
    for indices in reading_batches(model, tokenizer, texts, max_rows=batch_size):
        batch = encode(tokenizer, [texts[i] for i in indices], model.device)
        logits = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=left_padded_positions(batch.attention_mask),
            logits_to_keep=1,
        ).logits[:, -1].float()
        for row, i in zip(logits, indices, strict=True):
            table = letter_token_ids(tokenizer, labels[i])
            ids = list(table)
            letters[i] = table[ids[int(row[ids].argmax())]]
    return [letters[i] for i in range(len(texts))]


def score_choices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    transcripts: Sequence[str],
    responses: Sequence[str],
    golds: Sequence[str],
    labels: Sequence[Sequence[str]],
    *,
    force_choice: bool = True,
    batch_size: int = 16,
) -> list[Extraction]:
    """Multiple choice: extract and score each response through the suffix continuation (unsteered, greedy).

    ``transcripts[i]`` is the exact text the model answered after (prompt, plus the offset token of a
    steered method); ``responses[i]`` its answer text; ``labels[i]`` the item's option letters.
    """
    inputs = [t + r + ANSWER_SUFFIX for t, r in zip(transcripts, responses, strict=True)]
    continuations = generate(
        model, tokenizer, inputs, max_new_tokens=ANSWER_TOKENS, batch_size=batch_size, progress=False, do_sample=False
    )
    texts = [r + ANSWER_SUFFIX + c.text for r, c in zip(responses, continuations, strict=True)]
    found = [match_choice(text) for text in texts]
    unread = [i for i, (letter, _) in enumerate(found) if letter == INVALID] if force_choice else []
    if unread:
        forced = forced_choices(model, tokenizer, [inputs[i] for i in unread], [labels[i] for i in unread], batch_size)
        for i, letter in zip(unread, forced, strict=True):
            found[i] = (letter, "forced choice")
    return [Extraction(letter, how, text, letter == gold)
            for (letter, how), text, gold in zip(found, texts, golds, strict=True)]
