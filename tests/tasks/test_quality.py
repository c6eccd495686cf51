"""The degeneration measure on texts whose answer is known by construction."""

from __future__ import annotations

import pytest

from cachesteer_lite.tasks.quality import degenerate_share, is_degenerate, repetition_rate


def test_a_loop_is_degenerate_and_prose_is_not() -> None:
    loop = "A: 0.025 kg x m/s = " + "0.025 kg x m/s = " * 20
    prose = ("Rubbing hands together turns motion into heat through friction, so the surface that keeps friction "
             "highest produces the most heat. Water, oil and lotion all act as lubricants.")
    assert repetition_rate(loop) > 0.9 and is_degenerate(loop)
    assert repetition_rate(prose) == 0.0 and not is_degenerate(prose)


def test_exact_rate_of_a_small_case() -> None:
    # words a b c d a b c d: 5 four-grams, of which (a b c d) repeats once -> 1 - 4/5
    assert repetition_rate("a b c d a b c d") == pytest.approx(0.2)
    assert repetition_rate("A. B. C. D. a b c d") == pytest.approx(0.2)  # case and punctuation do not matter
    assert repetition_rate("l.l.l.l.l.l.l.l.l.l") == pytest.approx(6 / 7)  # "justin.l.l.l..." is a loop


def test_short_texts_have_no_room_for_a_loop() -> None:
    assert repetition_rate("C C C C C C C") == 0.0  # 7 words < 2 * 4
    assert repetition_rate("") == 0.0


def test_loops_without_words_are_measured_on_characters() -> None:
    # late-layer CAA in the stored grids: symbols with no words, and words run together
    symbols, run_together = "-$" * 60, "B: " + "Baking" * 40
    assert is_degenerate(symbols) and is_degenerate(run_together)
    assert repetition_rate("C: Earth rotates on its axis " + "nearly" * 50) > 0.9  # a few words, then one long "word"
    # few words, or long ones, without a loop stay clean, and a short text still has no room for one
    assert not is_degenerate("Photosynthesis requires chlorophyll-containing chloroplasts.")
    assert not is_degenerate("Onthatdayofspringnextyearthebirdsmigratedfromthelake")
    assert repetition_rate("-$-$-$-$") == 0.0  # 8 characters < 2 * 8


def test_share_and_bad_input() -> None:
    assert degenerate_share(["a b c d " * 5, "one two three four five six seven eight nine"]) == 0.5
    with pytest.raises(ValueError, match="no texts"):
        degenerate_share([])
    with pytest.raises(ValueError, match="n must be at least 1"):
        repetition_rate("a b", n=0)
