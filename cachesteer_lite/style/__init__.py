"""Reasoning-style transfer (paper-reference section 6): steer with a vector built from traces of one style, then
measure the style twice, by explicit rules (:mod:`rules`) and by a classifier on sentence embeddings
(:mod:`classifier`). :mod:`transfer` runs the paper's grid through the evaluation runner."""

from __future__ import annotations

from .classifier import (
    Confusion,
    StyleClassifier,
    adherence,
    confusion,
    held_out_evaluation,
    shipped_style_traces,
    style_features,
    style_traces_path,
)
from .rules import RULES, rule_labels, rule_style
from .transfer import TARGET_STYLES, run_style_transfer

__all__ = [
    "RULES",
    "TARGET_STYLES",
    "Confusion",
    "StyleClassifier",
    "adherence",
    "confusion",
    "held_out_evaluation",
    "rule_labels",
    "rule_style",
    "run_style_transfer",
    "shipped_style_traces",
    "style_features",
    "style_traces_path",
]
