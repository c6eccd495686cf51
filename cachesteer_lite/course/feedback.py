"""What every exercise checker shares: a blank or malformed answer is a message, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Feedback:
    """A checker's verdict: ``correct``, and one sentence a learner can act on."""

    correct: bool
    message: str

    def __str__(self) -> str:
        return ("correct: " if self.correct else "not yet: ") + self.message

    __repr__ = __str__  # a notebook cell that ends in a checker call shows the sentence


def correct(message: str) -> Feedback:
    return Feedback(True, message)


def wrong(message: str) -> Feedback:
    return Feedback(False, message)


def is_blank(answer: Any) -> bool:
    """A student edition's exercise cell holds ``answer_N = ...``; older ones used ``None``."""
    return answer is None or answer is Ellipsis


Checker = Callable[..., Feedback]


def checker(expects: str) -> Callable[[Checker], Checker]:
    """Decorates a checker: a blank answer gets "set <expects>"; an answer of the wrong kind (a string
    for a number, a tuple of the wrong length) gets what was expected instead of the exception it raised."""

    def decorate(check: Checker) -> Checker:
        @functools.wraps(check)
        def run(answer: Any, *args: Any, **kwargs: Any) -> Feedback:
            if is_blank(answer):
                return wrong(f"set {expects}")
            try:
                return check(answer, *args, **kwargs)
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
                return wrong(f"this answer has the wrong form ({type(error).__name__}: {error}); expected {expects}")

        return run

    return decorate


def close(answer: float, expected: float, tolerance: float = 1e-6) -> bool:
    """Equal up to a relative tolerance (and an absolute one near zero)."""
    return abs(float(answer) - expected) <= tolerance * max(1.0, abs(expected))
