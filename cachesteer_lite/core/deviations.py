"""Where this project differs from the paper on purpose, recorded next to the code that differs.

Every module whose behaviour departs from the paper's code lists the departures in a ``DEVIATIONS`` tuple of
:class:`Deviation` records. The book's reproducibility page prints them all, generated from these lists
(``python -m cachesteer_lite pages``), so that the page and the code cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Deviation(NamedTuple):
    """One difference from the paper: what it concerns, what the paper did, what we do, and why it matters."""

    what: str
    paper: str
    ours: str
    why: str


def markdown_table(deviations: Sequence[Deviation]) -> str:
    """The deviations as a Markdown table with the columns of the book's reproducibility page (a ``|`` inside a
    cell is escaped, code spans included, as tables require)."""
    if not deviations:
        raise ValueError("no deviations to print")
    rows = ["| | the paper | this book | why it matters |", "|---|---|---|---|"]
    rows += ["| " + " | ".join(cell.replace("|", "\\|") for cell in deviation) + " |" for deviation in deviations]
    return "\n".join(rows)
