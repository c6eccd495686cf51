"""The statistics of the book, in one place: intervals for accuracies, paired tests, bootstrap intervals.

* :func:`wilson_interval`: the 95% interval of an accuracy (correct / n), exact at 0 and n.
* :func:`paired_comparison`: two methods on the same items, with the exact McNemar test. Intervals of two
  methods overlap easily at n = 300; the paired view asks the sharper question of whether the items one method
  fixed outnumber those it broke by more than chance would.
* :func:`bootstrap_mean`: a mean difference with a 95% bootstrap interval over paired samples.
* :func:`paired_sample_size`: how many items a paired test needs to detect a given accuracy difference (power).
* :func:`mean_sample_size`: the same for a mean of paired differences, such as a bias pooled over sampled seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``correct / n`` (95% by default)."""
    if n <= 0:
        raise ValueError("a confidence interval needs at least one item")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact at the ends: 0/n and n/n touch 0 and 1 (the formula leaves rounding dust there).
    return (0.0 if correct == 0 else centre - half), (1.0 if correct == n else centre + half)


def mcnemar_p(only_first: int, only_second: int) -> float:
    """The exact two-sided McNemar p-value of the discordant counts (1.0 when there are none)."""
    discordant = only_first + only_second
    if not discordant:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1)) / 2**discordant
    return min(1.0, 2 * tail)


def paired_comparison(first: Mapping[Any, Mapping], second: Mapping[Any, Mapping]) -> dict[str, Any]:
    """Two methods on the same items (records by item index, each with a ``correct`` field): how many items both,
    each alone and neither got right, and the exact McNemar p-value of the difference."""
    if set(first) != set(second):
        raise ValueError("the two runs cover different items: compare runs of the same task, split and limit")
    only_first = sum(bool(first[i]["correct"]) and not second[i]["correct"] for i in first)
    only_second = sum(bool(second[i]["correct"]) and not first[i]["correct"] for i in first)
    both = sum(bool(first[i]["correct"]) and bool(second[i]["correct"]) for i in first)
    return {"n": len(first), "both": both, "only_first": only_first, "only_second": only_second,
            "neither": len(first) - both - only_first - only_second, "p_value": mcnemar_p(only_first, only_second)}


def bootstrap_mean(differences: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The mean of paired ``differences`` with a 95% bootstrap interval over them, and the share below zero."""
    if not differences:
        raise ValueError("no differences to average")
    values = torch.tensor(list(differences), dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(values), (n_boot, len(values)), generator=generator)
    means = values[draws].mean(1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"mean": values.mean().item(), "ci95": [low, high], "share_better": (values < 0).double().mean().item()}


def paired_sample_size(discordant_share: float, difference: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """How many items a two-sided McNemar test at level ``alpha`` needs to detect an accuracy ``difference`` with
    probability ``power``, when a share ``discordant_share`` of the items is right under exactly one method.

    Connor's normal approximation (Biometrics 43, 1987): n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2. Only the
    discordant items carry information, so a method that changes many answers in both directions needs many more
    items to show the same net gain than one that only fixes answers."""
    if not 0 < abs(difference) <= discordant_share <= 1:
        raise ValueError(f"need 0 < |difference| <= discordant share <= 1, not {difference} and {discordant_share}")
    z_alpha = statistics.NormalDist().inv_cdf(1 - alpha / 2)
    z_power = statistics.NormalDist().inv_cdf(power)
    root = z_alpha * math.sqrt(discordant_share) + z_power * math.sqrt(discordant_share - difference**2)
    return math.ceil(root**2 / difference**2)


def mean_sample_size(sd: float, difference: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """How many items a two-sided test of a mean paired difference at level ``alpha`` needs to detect a mean
    ``difference`` with probability ``power``, when one item's difference has standard deviation ``sd``.

    The normal approximation n = ((z_a + z_b) sd / d)^2: a bias pooled over sampled seeds is such a mean, one
    difference per question (its items' differences in the same units as ``difference``)."""
    if sd <= 0 or difference == 0:
        raise ValueError(f"need a positive sd and a nonzero difference, not {sd} and {difference}")
    z_alpha = statistics.NormalDist().inv_cdf(1 - alpha / 2)
    z_power = statistics.NormalDist().inv_cdf(power)
    return math.ceil(((z_alpha + z_power) * sd / difference) ** 2)
