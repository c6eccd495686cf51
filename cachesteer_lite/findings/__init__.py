"""The book's verdicts on the paper's claims, computed from the stored runs: the findings box that opens the book
(``book/intro.md``) and closes notebook 5 (:func:`findings_markdown`).

Each claim of Belitsky et al. (longer reasoning, accuracy greedy and sampled, CoT plus steering, its offset-token
control, robustness to its settings, stability against CAA, latency, style transfer) and of Liu et al. (cache
augmentation) gets the paper's number, ours, a verdict and what it would take to settle it. The verdicts follow
fixed rules over the numbers (a paired difference counts only at p < 0.05, a pooled sampled one only when its 95%
interval excludes zero), so they change when the stored runs do; the power calculation says how many questions a
paired test would need to see the paper's SmolLM2 gains, at our runs' rate of changed answers.

The rows live by where their claims come from: :mod:`.evaluation` (the results tables and the ablation) and
:mod:`.studies` (CAA, style transfer, cache augmentation); :mod:`.common` holds what they share.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import STORED_MODEL, Finding
from .evaluation import evaluation_findings
from .studies import augmentation_row, latency_row, stability_row, style_row

__all__ = ["STORED_MODEL", "Finding", "evaluation_findings", "findings", "findings_markdown"]


def findings() -> list[Finding]:
    """Every finding, in the order of the paper's claims."""
    return evaluation_findings() + [stability_row(), latency_row(), style_row(), augmentation_row()]


def findings_markdown(rows: Sequence[Finding] | None = None) -> str:
    """The findings as Markdown (the block ``findings`` of the landing page): one item per claim, the verdict first,
    then our numbers, the paper's and what would settle it; a list, not a five-column table, reads on a phone."""
    items = []
    for row in findings() if rows is None else rows:
        ours, paper, to_settle = (text.rstrip(".") for text in (row.ours, row.paper, row.to_settle))
        items.append(f"- **{row.claim}.** *Verdict:* {row.verdict}.\n  - *Ours:* {ours}.\n  - *The paper:* {paper}.\n"
                     f"  - *To settle:* {to_settle}.")
    return "\n".join(items)
