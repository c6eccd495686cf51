"""Reasoning-style rules: does a text open in a style and carry its structure?

The paper reports style transfer (paper-reference section 6) but ships no code to measure adherence. This
module is the first of two independent measures (the other is the classifier of :mod:`classifier`): per style,
an opening the text must start with and a structural marker it must contain, e.g. "Step 1" ... "Step 2"
(:data:`RULES`, :func:`rule_style`). The openings exclude each other, so at most one rule matches a text; a
text no rule matches is plain reasoning and is labelled ``default``. Both measures are checked on the
hand-written style traces shipped in ``data/traces/arc_challenge_styles.jsonl`` (20 ARC train items in each of
the five styles).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..tasks.traces import STYLES

# Leading whitespace and markdown decoration ("## ", "**", "> ") that may precede a generated text's opening.
_LEADING_DECORATION = re.compile(r"^[\s#>*_]*")


@dataclass(frozen=True)
class StyleRule:
    """The surface rule of one style: the text must start with ``opening`` (case-insensitive, after leading
    whitespace and markdown decoration) and contain ``structure`` at least ``min_count`` times anywhere."""

    style: str
    opening: re.Pattern[str]
    structure: re.Pattern[str] | None
    min_count: int
    summary: str

    def matches(self, text: str) -> bool:
        """Whether ``text`` opens like this style and has its structure."""
        if not self.opening.match(_strip_decoration(text)):
            return False
        return self.structure is None or len(self.structure.findall(text)) >= self.min_count


def _rule(style: str, opening: str, structure: str | None, min_count: int, summary: str) -> StyleRule:
    """A StyleRule with its patterns compiled case-insensitively."""
    compiled = re.compile(structure, re.IGNORECASE) if structure is not None else None
    return StyleRule(style, re.compile(opening, re.IGNORECASE), compiled, min_count, summary)


# One rule per style (data/traces/SCHEMA.md). The openings are disjoint, so at most one rule matches a text.
# Causal chains may open with "If": the paper's steered SmolLM2 outputs did (paper-reference section 6).
RULES: dict[str, StyleRule] = {
    rule.style: rule
    for rule in (
        _rule("stepwise", r"step\s*1\b", r"\bstep\s*2\b", 1,
              'opens with "Step 1" and has a "Step 2"'),
        _rule("strategy_execution", r"(?:strategy|plan)[*_]*\s*:",
              r"\b(?:execution|carrying (?:this|it|that|the plan) out|applying (?:this|it|that|the plan))\b", 1,
              'opens with "Strategy:" or "Plan:" and later carries it out ("Execution", "Carrying this out", '
              '"Applying this")'),
        _rule("causal_chain", r"(?:because|since|if|due to)\b",
              r"\b(?:(?:this|that|which|it) (?:causes?|caused|leads?|led|means|makes|made|results?)\b|"
              r"as a result\b|therefore\b|consequently\b|thus\b|hence\b)", 2,
              'opens with "Because", "Since", "If" or "Due to" and has two causal links ("this causes", '
              '"this leads", "As a result", "Therefore", "Thus", ...)'),
        _rule("annotated_deduction", r"\[|(?:facts?|premises?|given|observations?|definitions?)[*_]*\s*:",
              r"\[(?=[^\]\n]*[a-z]{2})[^\[\]\n]{2,80}\]", 2,
              'opens with a bracket or a label ("Fact:", "Premise:", "Given:", "Observation:", "Definition:") '
              'and has two bracketed annotations of words ("[given]", "[from the fact above]")'),
        _rule("analogical", r"(?:just like|think of|imagine|picture|similar to|"
              r"(?:it is|it[’']s|this is) (?:similar to|like))\b", None, 0,
              'opens with an analogy: "Just like", "Think of", "Imagine", "Picture", "It is similar to", '
              '"It\'s like"'),
    )
}


def _strip_decoration(text: str) -> str:
    """``text`` without leading whitespace and markdown decoration, so that "\\n\\n**Step 1:**" opens with Step 1."""
    return _LEADING_DECORATION.sub("", text, count=1)


def check_style(style: str) -> None:
    """Raise ValueError unless ``style`` is one of :data:`traces.STYLES`."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")


def rule_scores(text: str) -> dict[str, bool]:
    """For each of the five styles, whether its rule matches ``text`` (at most one does)."""
    return {style: rule.matches(text) for style, rule in RULES.items()}


def rule_style(text: str) -> str | None:
    """The style whose rule matches ``text``, or None when none does."""
    return next((style for style, matched in rule_scores(text).items() if matched), None)


def rule_labels(texts: Sequence[str]) -> list[str]:
    """The style the rules detect in each text, ``default`` (plain reasoning) where no rule matches."""
    check_texts(texts)
    return [rule_style(text) or "default" for text in texts]


def check_texts(texts: Sequence[str]) -> None:
    """Raise for a bare string (a common slip for a list of one text) or for no texts at all."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single string; wrap it in a list")
    if len(texts) == 0:
        raise ValueError("no texts given; at least one text is needed")
