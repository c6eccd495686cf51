"""Answer extraction: the paper's patterns and their order, the fixed number reading, and the suffix and
forced-choice steps on the real SmolLM2 model (never steered)."""

from __future__ import annotations

import pytest
import torch

from cachesteer_lite import Completion, chat_prompt, generate
from cachesteer_lite.tasks import scoring
from cachesteer_lite.tasks.data import load_items
from cachesteer_lite.tasks.scoring import (
    ANSWER_SUFFIX,
    DEVIATIONS,
    INCORRECT,
    INVALID,
    canonical_number,
    forced_choices,
    last_number,
    letter_token_ids,
    match_choice,
    score_choices,
    score_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She pays $27.00 in total.", "27"),  # the paper read 2700
        ("The answer is 1,000.", "1000"),
        ("So 18.", "18"),  # a sentence's period is not a decimal point
        ("It costs $1,234.50.", "1234.5"),
        ("He owes -5 dollars", "-5"),
        ("pages 3-4", "4"),  # a hyphen between numbers is not a minus sign
        ("first 12, then 7, finally 2.50 each", "2.5"),
        ("1,000,000 people", "1000000"),
        ("no number here", None),
    ],
)
def test_last_number(text: str, expected: str | None) -> None:
    assert last_number(text) == expected


def test_numbers_compare_as_numbers() -> None:
    assert canonical_number("27.00") == canonical_number("$27") == "27"
    assert canonical_number("100") == "100" and canonical_number("-0") == "0"
    assert canonical_number("12 apples") is None
    assert score_number("The answer is $70,000.00.", "70000").correct
    assert not score_number("The answer is 7000.", "70000").correct
    assert score_number("no idea", "5").prediction == INVALID


@pytest.mark.parametrize(
    ("text", "letter", "pattern"),
    [
        # The suffix's own wording wins over an earlier statement (first pattern with a match).
        ("The correct answer is B.\nSo the correct choice is C: cats", "C", "the correct choice is X"),
        # Within a pattern the last match wins.
        ("The correct choice is A. Wait, the correct choice is D.", "D", "the correct choice is X"),
        ("I think the answer is: (B)\nSo the correct choice is", "B", "the answer is X"),
        ("**Answer: D**", "D", "Answer: X"),
        ("The correct answer is option D here", "D", "the correct answer is ... X (one letter, no negation or list)"),
        ("The best answer is C.", "C", "the best answer is X"),
        ("A: dry palms, because friction", "A", "X: at the start"),
        ("\nA: dry palms", "A", "X: at the start"),  # a steered response's leading newline no longer hides it
        ("The correct answer is not A, but maybe\nSo the correct choice is", INVALID, "no match"),
        ("Hmm.\nSo the correct choice is none of the above", INCORRECT, "several or no options"),
        ("Hmm.\nSo the correct choice is either B or C", INCORRECT, "several or no options"),
        ("the correct choice is b", INVALID, "no match"),  # letters are upper case, as in the paper
    ],
)
def test_match_choice(text: str, letter: str, pattern: str) -> None:
    assert match_choice(text) == (letter, pattern)


def test_deviations_are_printable() -> None:
    assert all(len(row) == 4 and all(isinstance(cell, str) and cell for cell in row) for row in DEVIATIONS)
    assert any("27.00" in row.paper for row in DEVIATIONS)


def test_letter_token_ids(smollm2) -> None:
    _, tokenizer = smollm2
    first = {form: tokenizer(form, add_special_tokens=False).input_ids[0] for form in ("A", " A", "B", " B")}
    assert letter_token_ids(tokenizer, ("A", "B")) == {first[form]: form.strip() for form in first}

    class SharedPiece:  # a tokenizer whose letters all start with the same piece
        def __call__(self, text, add_special_tokens=False):
            return type("Encoding", (), {"input_ids": [7, ord(text.strip())]})()

    with pytest.raises(ValueError, match="share their first token"):
        letter_token_ids(SharedPiece(), ("A", "B"))


def _transcripts(tokenizer, items):
    return [chat_prompt(tokenizer, item.question) for item in items]


def test_suffix_continuation_is_plain_greedy_generation(smollm2) -> None:
    model, tokenizer = smollm2
    items = load_items("arc_challenge", limit=3)
    transcripts = _transcripts(tokenizer, items)
    responses = ["Friction between the plates releases energy.", "", "Let me think about each option."]
    extractions = score_choices(model, tokenizer, transcripts, responses, [i.answer for i in items],
                                [i.labels for i in items], batch_size=3)
    plain = generate(model, tokenizer, [t + r + ANSWER_SUFFIX for t, r in zip(transcripts, responses, strict=True)],
                     max_new_tokens=scoring.ANSWER_TOKENS, batch_size=3, progress=False)
    for extraction, response, completion, item in zip(extractions, responses, plain, items, strict=True):
        assert extraction.text == response + ANSWER_SUFFIX + completion.text
        assert extraction.prediction in {"A", "B", "C", "D", "E", INCORRECT}
        assert extraction.correct == (extraction.prediction == item.answer)


def test_forced_choice_reads_the_next_token_logits(smollm2) -> None:
    model, tokenizer = smollm2
    items = load_items("arc_challenge", limit=2) + load_items("piqa", limit=1)
    texts = [t + "I am not sure." + ANSWER_SUFFIX for t in _transcripts(tokenizer, items)]
    letters = forced_choices(model, tokenizer, texts, [i.labels for i in items], batch_size=3)
    for text, item, letter in zip(texts, items, letters, strict=True):
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        table = letter_token_ids(tokenizer, item.labels)
        assert letter == table[max(table, key=lambda token: logits[token].item())]
        assert letter in item.labels  # PIQA: only A or B


def test_invalid_answers_fall_back_to_forced_choice(smollm2, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = smollm2
    items = load_items("piqa", limit=2)
    transcripts = _transcripts(tokenizer, items)
    unreadable = [Completion(" hard to say.", 4)] * len(items)
    monkeypatch.setattr(scoring, "generate", lambda *args, **kwargs: unreadable)
    args = (model, tokenizer, transcripts, ["", ""], [i.answer for i in items], [i.labels for i in items])
    assert [e.prediction for e in score_choices(*args, force_choice=False)] == [INVALID, INVALID]
    forced = score_choices(*args)
    expected = forced_choices(model, tokenizer, [t + ANSWER_SUFFIX for t in transcripts], [i.labels for i in items])
    assert [e.prediction for e in forced] == expected
    assert all(e.method == "forced choice" and e.prediction in ("A", "B") for e in forced)
