"""The book's statistics: Wilson intervals, the exact McNemar test of paired runs, bootstrap intervals, power."""

from __future__ import annotations

import pytest
import torch

from cachesteer_lite.runs.statistics import (
    bootstrap_mean,
    mcnemar_p,
    mean_sample_size,
    paired_comparison,
    paired_sample_size,
    wilson_interval,
)


def test_wilson_interval() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.40383, abs=1e-5) and high == pytest.approx(0.59617, abs=1e-5)
    assert wilson_interval(0, 4) == (0.0, pytest.approx(0.48990, abs=1e-5))
    assert wilson_interval(4, 4)[1] == 1.0
    with pytest.raises(ValueError, match="at least one item"):
        wilson_interval(0, 0)


def _records(correct: list[bool]) -> dict[int, dict]:
    return {i: {"index": i, "correct": c} for i, c in enumerate(correct)}


def test_paired_comparison_counts_and_exact_mcnemar() -> None:
    first = _records([True, True, False, False, True, False, False, False, False, False])
    second = _records([True, False, True, True, True, True, True, True, True, False])
    paired = paired_comparison(first, second)
    assert (paired["both"], paired["only_first"], paired["only_second"], paired["neither"]) == (2, 1, 6, 1)
    # exact two-sided: 2 * P(X <= 1) for X ~ Binomial(7, 1/2) = 2 * 8/128
    assert abs(paired["p_value"] - 0.125) < 1e-12
    assert paired_comparison(first, first)["p_value"] == 1.0
    with pytest.raises(ValueError, match="different items"):
        paired_comparison(first, _records([True]))


def test_mcnemar_is_symmetric_and_capped_at_one() -> None:
    assert mcnemar_p(1, 6) == mcnemar_p(6, 1) == pytest.approx(0.125)
    assert mcnemar_p(3, 3) == 1.0 and mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(0, 10) == pytest.approx(2 / 2**10)


def test_bootstrap_mean_of_paired_differences() -> None:
    constant = bootstrap_mean([-0.5] * 4)
    assert constant["mean"] == pytest.approx(-0.5) and constant["ci95"] == pytest.approx([-0.5, -0.5])
    assert constant["share_better"] == 1
    mixed = bootstrap_mean([-1.0, 0.5, 0.0, 1.0], seed=3)
    assert mixed["ci95"][0] < mixed["mean"] < mixed["ci95"][1] and mixed["share_better"] == 0.25
    assert bootstrap_mean([-1.0, 0.5, 0.0, 1.0], seed=3) == mixed  # seeded: the same interval every time
    with pytest.raises(ValueError, match="no differences"):
        bootstrap_mean([])


def test_paired_sample_size_by_hand() -> None:
    # psi = 0.2, d = 0.05: (1.95996 * sqrt(0.2) + 0.84162 * sqrt(0.1975))^2 / 0.0025 = 625.5
    assert paired_sample_size(0.2, 0.05) == 626
    assert paired_sample_size(0.2, -0.05) == 626  # the direction does not matter
    assert paired_sample_size(0.4, 0.05) > paired_sample_size(0.2, 0.05)  # more discordance, more items
    assert paired_sample_size(0.2, 0.05, power=0.9) > 626
    with pytest.raises(ValueError, match="discordant share"):
        paired_sample_size(0.02, 0.05)  # a net gain larger than the share of items that changed


def test_paired_sample_size_gives_its_power_in_simulation() -> None:
    """At the computed n, the exact McNemar test rejects in about 80% of simulated paired runs."""
    discordant, difference = 0.2, 0.08
    n = paired_sample_size(discordant, difference)
    generator = torch.Generator().manual_seed(0)
    # Each item: right only under the first method, only under the second, or neither/both (no information).
    probabilities = torch.tensor([(discordant + difference) / 2, (discordant - difference) / 2, 1 - discordant])
    rejections = 0
    trials = 400
    for _ in range(trials):
        counts = torch.bincount(torch.multinomial(probabilities, n, replacement=True, generator=generator),
                                minlength=3)
        rejections += mcnemar_p(int(counts[0]), int(counts[1])) < 0.05
    # The exact test is a little conservative against the normal approximation: between 70% and 88%.
    assert 0.70 <= rejections / trials <= 0.88, (n, rejections / trials)


def test_mean_sample_size_by_hand() -> None:
    # sd = 10, d = 1: ((1.95996 + 0.84162) * 10 / 1)^2 = 784.9
    assert mean_sample_size(10, 1) == 785
    assert mean_sample_size(10, -1) == 785  # the direction does not matter
    assert mean_sample_size(10, 2) == 197  # twice the difference, a quarter of the items (rounded up)
    assert mean_sample_size(10, 1, power=0.9) > 785
    with pytest.raises(ValueError, match="positive sd"):
        mean_sample_size(0, 1)
    with pytest.raises(ValueError, match="nonzero difference"):
        mean_sample_size(10, 0)


def test_mean_sample_size_gives_its_power_in_simulation() -> None:
    """At the computed n, a two-sided test of the mean rejects in about 80% of simulated runs of items whose
    differences take values like the pooled gains of five seeds (steps of 20 points, from -100 to +100)."""
    steps = torch.tensor([-100.0, -20.0, 0.0, 20.0, 100.0])
    probabilities = torch.tensor([0.05, 0.15, 0.55, 0.18, 0.07])
    mean = float((steps * probabilities).sum())
    sd = float(((steps - mean) ** 2 * probabilities).sum().sqrt())
    n = mean_sample_size(sd, mean)
    generator = torch.Generator().manual_seed(0)
    rejections, trials = 0, 400
    for _ in range(trials):
        sample = steps[torch.multinomial(probabilities, n, replacement=True, generator=generator)]
        z = sample.mean() / (sample.std() / n**0.5)
        rejections += abs(float(z)) > 1.959963984540054
    assert 0.72 <= rejections / trials <= 0.88, (n, rejections / trials)
