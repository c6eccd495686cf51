"""How much a generated text repeats itself: the degeneration measure of the stability comparisons.

Strong steering pushes a small model into loops ("= 0.025 kg x m/s = 0.025 kg x m/s = ..."), and a method that
looks stable in accuracy can still be producing such text. The measure is deliberately simple so that a reader can
check it by eye: the share of the text's word 4-grams that already occurred earlier in it. A text is counted as
degenerate when at least half of them are repeats; legitimate answers that restate the chosen option once stay
well below that (on the embedded model's ARC baseline answers the median is 0.02). A short answer that names
the same option two or three times can reach it too; in the stored 300-question runs most degenerate answers
(about three in four) run into the token limit, which is what a loop does.

Steering at a late layer can also break text into loops without words: strings of symbols ("-$-$-$...") or words
run together ("BakingBakingBaking..."). Word 4-grams cannot see those, so a text with too few words for a word loop,
or whose "words" are too long to be words, is measured on its characters instead: the share of its 8-character
n-grams, spaces removed, that repeat an earlier one. Ordinary prose never takes that path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NGRAM = 4
DEGENERATE_AT = 0.5
CHAR_NGRAM = 8  # about two words' worth of characters
RUN_TOGETHER_AT = 12  # mean characters a "word" above which the text has lost its spaces (English: about 5)
_WORD = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")


def _repeated_share(units: Sequence[object], n: int) -> float:
    """Share of the n-grams of ``units`` that repeat an earlier one; 0 when there are fewer than ``2 * n`` units,
    too few to hold a loop."""
    if len(units) < 2 * n:
        return 0.0
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    return 1 - len(set(grams)) / len(grams)


def repetition_rate(text: str, n: int = NGRAM) -> float:
    """Share of the word n-grams of ``text`` that repeat an earlier one (0: none, close to 1: one loop).

    Words are lower-cased runs of letters and digits, so "l.l.l.l" is a run of repeated words too. A text with
    fewer than ``2 * n`` words, or whose words average more than ``RUN_TOGETHER_AT`` characters, is measured on its
    characters (``CHAR_NGRAM``-grams, spaces removed); a text with fewer than ``2 * CHAR_NGRAM`` of them scores 0.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    lowered = text.lower()
    words = _WORD.findall(lowered)
    if len(words) >= 2 * n and sum(map(len, words)) <= RUN_TOGETHER_AT * len(words):
        return _repeated_share(words, n)
    return _repeated_share(_SPACE.sub("", lowered), CHAR_NGRAM)


def is_degenerate(text: str, threshold: float = DEGENERATE_AT) -> bool:
    """Whether at least ``threshold`` of the text's word 4-grams (or, without words, 8-character n-grams) are
    repeats."""
    return repetition_rate(text) >= threshold


def degenerate_share(texts: Sequence[str], threshold: float = DEGENERATE_AT) -> float:
    """The share of ``texts`` that are degenerate."""
    if not texts:
        raise ValueError("no texts given")
    return sum(is_degenerate(text, threshold) for text in texts) / len(texts)
