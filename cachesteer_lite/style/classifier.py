"""The style classifier and the adherence of texts to a style.

* **Classifier** (:class:`StyleClassifier`): nearest centroid on all-MiniLM-L6-v2 sentence embeddings
  (:func:`style_features`), trained on the shipped traces. :func:`held_out_evaluation` shows, by
  cross-validation over items, that it recognises the styles of traces it was not trained on.
* :func:`adherence` gives, for texts meant to follow one style, the share each measure (the rules of
  :mod:`rules` and the classifier) detects in that style with a 95% Wilson interval; :func:`confusion` tabulates
  intended against detected styles.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..files import book_file
from ..runs.statistics import wilson_interval
from ..tasks.embeddings import embed
from ..tasks.traces import STYLES, Trace, read_traces
from .rules import check_style, check_texts, rule_labels


def style_traces_path() -> Path:
    """The shipped style traces: 20 ARC train items in each of the five styles."""
    return book_file("data/traces/arc_challenge_styles.jsonl")


def plain_traces_path() -> Path:
    """The shipped plain (default-style) ARC traces."""
    return book_file("data/traces/arc_challenge.jsonl")


# Words of a text's opening that style_features embeds beside the whole text. The whole-text embedding alone is
# dominated by content: on the shipped style traces, held_out_evaluation (seed 0) scores 0.62 with it and 0.93
# with both; openings of 8 to 16 words score alike (0.91-0.93), 24 words let content back in (0.85). The
# length was chosen on these traces, so their held-out accuracy is slightly optimistic.
OPENING_WORDS = 16


def style_features(texts: Sequence[str]) -> torch.Tensor:
    """``[n, 768]`` features of texts: the all-MiniLM-L6-v2 embedding of the first :data:`OPENING_WORDS` words
    beside the embedding of the whole text, scaled to unit norm so that both halves weigh equally in a cosine.

    The opening is where a style shows most; the whole text keeps a text that opens in style and then drifts
    away from its style's centroid.
    """
    check_texts(texts)
    openings = [" ".join(text.split()[:OPENING_WORDS]) for text in texts]
    return torch.cat([embed(openings), embed(list(texts))], dim=1) / math.sqrt(2)


class StyleClassifier:
    """Nearest-centroid reasoning-style classifier on :func:`style_features`.

    A style's centroid is the normalised mean of its training features; a text gets the style of the centroid
    nearest in cosine: no hyperparameters to tune on 20 traces per style, and no randomness.
    Train it with a ``default`` class (plain traces) so that text in no style can be recognised as such;
    without one, every text is forced into one of the styles it knows. ``default`` is its weakest class:
    held out, it recognises half of the shipped plain traces and calls the rest styled, while it calls only
    2 of the 100 styled traces plain (seed 0), so its adherence overstates style in unstyled text more
    than it understates it in styled text.
    """

    def __init__(self) -> None:
        self.styles: tuple[str, ...] = ()
        self._centroids: torch.Tensor | None = None

    @classmethod
    def shipped(cls, include_default: bool = True) -> StyleClassifier:
        """A classifier trained on :func:`shipped_style_traces` (embeds 100 or 120 traces: a few seconds)."""
        traces = shipped_style_traces(include_default)
        return cls().fit([trace.reasoning for trace in traces], [trace.style for trace in traces])

    def fit(self, texts: Sequence[str], styles: Sequence[str]) -> StyleClassifier:
        """Learn one centroid per style from texts and their styles; returns the classifier."""
        check_texts(texts)
        return self.fit_features(style_features(texts), styles)

    def fit_features(self, features: torch.Tensor, styles: Sequence[str]) -> StyleClassifier:
        """:meth:`fit` on precomputed :func:`style_features` (to train on many subsets, embedding once)."""
        if features.shape[0] != len(styles):
            raise ValueError(f"{features.shape[0]} texts but {len(styles)} styles; give one style per text")
        if len(styles) == 0:
            raise ValueError("no training texts given; at least one per style is needed")
        for style in set(styles):
            check_style(style)
        self.styles = tuple(style for style in STYLES if style in styles)
        centroids = [features[[i for i, s in enumerate(styles) if s == style]].mean(0) for style in self.styles]
        self._centroids = torch.nn.functional.normalize(torch.stack(centroids), dim=1)
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The predicted style of each text."""
        check_texts(texts)
        return self.predict_features(style_features(texts))

    def predict_features(self, features: torch.Tensor) -> list[str]:
        """:meth:`predict` on precomputed :func:`style_features`."""
        if self._centroids is None:
            raise RuntimeError("the classifier is not trained yet; call fit() or use StyleClassifier.shipped()")
        nearest = (features @ self._centroids.T).argmax(dim=1)
        return [self.styles[i] for i in nearest.tolist()]


def shipped_style_traces(include_default: bool = True) -> list[Trace]:
    """The shipped ARC style traces (100), and with ``include_default`` the plain traces of the same items (20).

    Taking the plain traces of the same items keeps content equal across classes, so that the classifier
    can only separate them by style.
    """
    traces = read_traces(style_traces_path())
    if include_default:
        keys = {(trace.task, trace.split, trace.index) for trace in traces}
        plain = read_traces(plain_traces_path())
        traces += [trace for trace in plain if (trace.task, trace.split, trace.index) in keys]
    return traces


@dataclass(frozen=True)
class Confusion:
    """Counts of intended (rows) against detected (columns) styles: ``counts[intended][detected]``.

    ``labels`` are the styles that occur on either side, in :data:`traces.STYLES` order.
    """

    labels: tuple[str, ...]
    counts: dict[str, dict[str, int]]

    @property
    def total(self) -> int:
        """The number of texts."""
        return sum(sum(row.values()) for row in self.counts.values())

    @property
    def accuracy(self) -> float:
        """The share of texts detected as their intended style (the diagonal)."""
        return sum(self.counts[label][label] for label in self.labels) / self.total

    def __str__(self) -> str:
        """A plain-text table, intended styles down, detected styles across."""
        width = max(map(len, ("intended \\ detected", *self.labels)))
        lines = [" ".join(f"{label:>{width}}" for label in ("intended \\ detected", *self.labels))]
        for row in self.labels:
            cells = [f"{row:>{width}}", *(f"{self.counts[row][column]:>{width}}" for column in self.labels)]
            lines.append(" ".join(cells))
        return "\n".join(lines)


def confusion(intended: Sequence[str], detected: Sequence[str]) -> Confusion:
    """The confusion table of intended against detected styles (both lists of :data:`traces.STYLES` names)."""
    if len(intended) != len(detected):
        raise ValueError(f"{len(intended)} intended styles but {len(detected)} detected ones; they must pair up")
    if not intended:
        raise ValueError("no styles given; a confusion table needs at least one text")
    for style in {*intended, *detected}:
        check_style(style)
    labels = tuple(style for style in STYLES if style in intended or style in detected)
    counts = {row: dict.fromkeys(labels, 0) for row in labels}
    for row, column in zip(intended, detected, strict=True):
        counts[row][column] += 1
    return Confusion(labels, counts)


@dataclass(frozen=True)
class CrossValidation:
    """The classifier's held-out accuracy (with its 95% Wilson interval) and confusion table."""

    accuracy: float
    ci95: tuple[float, float]
    confusion: Confusion
    folds: int
    seed: int


def item_folds(traces: Sequence[Trace], folds: int, seed: int) -> list[list[int]]:
    """Trace indices per fold, whole items at a time: the items (task, split, index) are shuffled with ``seed``
    and dealt round robin, so all traces of an item fall in the same fold.

    Holding out whole items is necessary: every shipped item is written in every style, and the item's other
    styles left in training pull a held-out trace towards their centroids by content. Plain stratified folds
    score 0.57 on the shipped style traces (0.02-0.06 on whole-text embeddings alone, far below chance), item
    folds 0.93 (seed 0); and generated text is about unseen items too. When every item has one trace per style, as
    in the shipped files, every fold also holds the same number of traces of each style.
    """
    if not traces:
        raise ValueError("no traces given; cross-validation needs traces of at least two items")
    items = sorted({(trace.task, trace.split, trace.index) for trace in traces})
    if not 2 <= folds <= len(items):
        raise ValueError(f"folds must be between 2 and the number of items ({len(items)}), got {folds}")
    random.Random(seed).shuffle(items)
    fold_of = {item: number % folds for number, item in enumerate(items)}
    split: list[list[int]] = [[] for _ in range(folds)]
    for i, trace in enumerate(traces):
        split[fold_of[(trace.task, trace.split, trace.index)]].append(i)
    return split


def held_out_evaluation(
    traces: Sequence[Trace], folds: int = 5, seed: int = 0, features: torch.Tensor | None = None
) -> CrossValidation:
    """Cross-validate :class:`StyleClassifier` over ``traces`` (:func:`item_folds`): each fold is predicted
    by a classifier trained on the other folds. The classes are the styles of ``traces``; include plain
    traces (:func:`shipped_style_traces`) to evaluate the ``default`` class too.

    ``features`` are the :func:`style_features` of the traces' reasoning, when already computed.
    """
    splits = item_folds(traces, folds, seed)
    if features is None:
        features = style_features([trace.reasoning for trace in traces])
    if features.shape[0] != len(traces):
        raise ValueError(f"{features.shape[0]} feature rows for {len(traces)} traces")
    styles = [trace.style for trace in traces]
    predicted = [""] * len(traces)
    for held_out in splits:
        held = set(held_out)
        train = [i for i in range(len(traces)) if i not in held]
        classifier = StyleClassifier().fit_features(features[train], [styles[i] for i in train])
        for i, style in zip(held_out, classifier.predict_features(features[held_out]), strict=True):
            predicted[i] = style
    correct = sum(p == s for p, s in zip(predicted, styles, strict=True))
    return CrossValidation(correct / len(traces), wilson_interval(correct, len(traces)),
                           confusion(styles, predicted), folds, seed)


def _detection(detected: list[str], intended_style: str) -> dict[str, Any]:
    """Count, share and 95% Wilson interval of the texts detected as ``intended_style``."""
    count = sum(style == intended_style for style in detected)
    low, high = wilson_interval(count, len(detected))
    return {"count": count, "share": count / len(detected), "ci95": [low, high], "detected": detected}


def adherence(
    texts: Sequence[str], intended_style: str, classifier: StyleClassifier | None = None
) -> dict[str, Any]:
    """How many of ``texts`` follow ``intended_style``, by the rules and by the classifier.

    Returns ``{"style", "n", "rules": {...}, "classifier": {...}}``, each measure with ``count``, ``share``,
    ``ci95`` (95% Wilson interval) and ``detected`` (the style found in each text). For ``default`` the rules
    count texts no style rule matches. ``classifier`` defaults to :meth:`StyleClassifier.shipped` (with the
    default class); train one once and pass it in when scoring several styles.
    """
    check_style(intended_style)
    check_texts(texts)
    classifier = classifier if classifier is not None else StyleClassifier.shipped()
    if intended_style not in classifier.styles:
        raise ValueError(f"the classifier was not trained on style {intended_style!r} "
                         f"(it knows {', '.join(classifier.styles) or 'none: call fit() first'})")
    return {
        "style": intended_style,
        "n": len(texts),
        "rules": _detection(rule_labels(texts), intended_style),
        "classifier": _detection(classifier.predict(texts), intended_style),
    }
