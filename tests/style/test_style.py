"""Style adherence: the rules and the classifier on the shipped hand-written style traces, tricky texts, and the
adherence summary's counts and Wilson intervals."""

from __future__ import annotations

import pytest
import torch

from cachesteer_lite.style.classifier import (
    StyleClassifier,
    adherence,
    confusion,
    held_out_evaluation,
    item_folds,
    shipped_style_traces,
    style_features,
)
from cachesteer_lite.style.rules import RULES, rule_labels, rule_scores, rule_style
from cachesteer_lite.tasks.traces import STYLES, Trace, read_traces

from conftest import REPO

TRACE_DIR = REPO / "data" / "traces"


@pytest.fixture(scope="module")
def traces() -> list[Trace]:
    """The 100 shipped style traces, then the 20 plain traces of the same ARC items."""
    return shipped_style_traces(include_default=True)


@pytest.fixture(scope="module")
def features(traces: list[Trace]) -> torch.Tensor:
    """style_features of the traces' reasoning, embedded once for the whole module."""
    return style_features([trace.reasoning for trace in traces])


def _styled(traces: list[Trace]) -> list[int]:
    """Indices of the traces written in one of the five styles."""
    return [i for i, trace in enumerate(traces) if trace.style != "default"]


def test_each_shipped_style_trace_matches_its_own_rule_and_no_other(traces: list[Trace]) -> None:
    styled = [traces[i] for i in _styled(traces)]
    assert len(styled) == 100
    for trace in styled:
        assert [style for style, hit in rule_scores(trace.reasoning).items() if hit] == [trace.style], trace.label
    table = confusion([trace.style for trace in styled], rule_labels([trace.reasoning for trace in styled]))
    assert table.labels == STYLES[1:]
    assert table.counts == {row: {col: 20 if col == row else 0 for col in STYLES[1:]} for row in STYLES[1:]}
    assert table.accuracy == 1.0


def test_no_rule_matches_a_shipped_plain_trace() -> None:
    """300 plain traces (ARC, CSQA, PIQA): two open like a causal chain ("Since", "If") but have no chain."""
    plain = [trace for task in ("arc_challenge", "csqa", "piqa") for trace in read_traces(TRACE_DIR / f"{task}.jsonl")]
    assert len(plain) == 300 and {trace.style for trace in plain} == {"default"}
    assert set(rule_labels([trace.reasoning for trace in plain])) == {"default"}
    assert sum(bool(RULES["causal_chain"].opening.match(trace.reasoning)) for trace in plain) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n\n  Step 1: Metals conduct heat. Step 2: So the spoon gets hot, B.", "stepwise"),
        ("step 1: metals conduct heat.\nstep 2: so the spoon gets hot, b.", "stepwise"),
        ("**Step 1:** Metals conduct heat.\n**Step 2:** So B.", "stepwise"),
        ("Step 1: Metals conduct heat, so the answer is B.", None),  # one step is not a sequence of steps
        ("Step 10: Recount. Step 2: B.", None),
        ("Step 1: Ice floats because it is less dense. Step 2: Therefore B.", "stepwise"),
        ("Strategy: recall what magnets attract. The answer is B.", None),  # a plan never carried out
        ("## Plan: recall what magnets attract.\nCarrying this out: steel is iron, so B.", "strategy_execution"),
        ("**Strategy**: compare forces. Execution: only the wind pushes east, B.", "strategy_execution"),
        ("If the plates collide, this causes folding. As a result, the layers bend. Therefore B.", "causal_chain"),
        ("  because rock is squeezed, it bends. as a result it folds. therefore b.", "causal_chain"),
        ("Because metal conducts heat, the spoon gets hot. Therefore B.", None),  # one link is not a chain
        ("The spoon gets hot because metal conducts heat. As a result it burns. Therefore B.", None),
        ("[Fact] Magnets attract iron [magnetism]. So the door holds iron, B [from the fact above].",
         "annotated_deduction"),
        ("Fact: magnets attract iron [given]. So the door contains iron, B.", None),  # one annotation
        ("Fact: either A [A] or B [B] is right.", None),  # option letters are not annotations
        ("Just like a paper clip, the door is pulled, B.", "analogical"),
        ("\njust like a paper clip, the door is pulled, B.", "analogical"),
        ("It’s like a paper clip on a magnet, B.", "analogical"),
        ("Think about what the question asks: magnets attract iron, B.", None),
        ("Steel doors contain iron, and magnets attract iron, so B.", None),
        ("", None),
    ],
)
def test_rules_on_tricky_texts(text: str, expected: str | None) -> None:
    assert rule_style(text) == expected
    assert sum(rule_scores(text).values()) == (expected is not None)


def test_item_folds_keep_items_whole_and_styles_balanced(traces: list[Trace]) -> None:
    folds = item_folds(traces, 5, seed=0)
    assert sorted(i for fold in folds for i in fold) == list(range(120))
    for fold in folds:
        assert len({traces[i].index for i in fold}) == 4  # 20 items dealt into 5 folds, all 6 traces of each
        assert sorted(traces[i].style for i in fold) == sorted(STYLES * 4)
    assert item_folds(traces, 5, seed=0) == folds and item_folds(traces, 5, seed=1) != folds
    with pytest.raises(ValueError, match="between 2 and the number of items"):
        item_folds(traces, 21, seed=0)


def test_classifier_recognises_held_out_styles(traces: list[Trace], features: torch.Tensor) -> None:
    """Measured (seed 0): 93/100 without the default class (0.91-0.93 over seeds 0-4), 102/120 with it
    (0.825-0.85); the thresholds are those values rounded down, a few flipped predictions below them."""
    styled = _styled(traces)
    five = held_out_evaluation([traces[i] for i in styled], folds=5, seed=0, features=features[styled])
    assert five.accuracy >= 0.9 and five.confusion.total == 100
    assert five.confusion.labels == STYLES[1:]
    assert five.ci95[0] < five.accuracy < five.ci95[1]
    six = held_out_evaluation(traces, folds=5, seed=0, features=features)
    assert six.accuracy >= 0.8 and six.confusion.labels == STYLES
    assert all(sum(row.values()) == 20 for row in six.confusion.counts.values())
    assert held_out_evaluation(traces, folds=5, seed=0, features=features) == six  # deterministic


def test_classifier_fit_and_predict_on_texts(traces: list[Trace], features: torch.Tensor) -> None:
    texts = [traces[i].reasoning for i in (0, 20, 40, 60, 80)]  # the first item in each of the five styles
    classifier = StyleClassifier().fit_features(features, [trace.style for trace in traces])
    assert classifier.styles == STYLES
    assert classifier.predict(texts) == list(STYLES[1:])
    assert StyleClassifier().fit(texts, list(STYLES[1:])).predict(texts) == list(STYLES[1:])


def test_classifier_errors(features: torch.Tensor) -> None:
    with pytest.raises(RuntimeError, match="not trained yet"):
        StyleClassifier().predict_features(features)
    with pytest.raises(ValueError, match="unknown style 'poetic'"):
        StyleClassifier().fit_features(features[:2], ["stepwise", "poetic"])
    with pytest.raises(ValueError, match="2 texts but 1 styles"):
        StyleClassifier().fit_features(features[:2], ["stepwise"])
    with pytest.raises(ValueError, match="no texts given"):
        StyleClassifier().fit([], [])
    with pytest.raises(TypeError, match="single string"):
        StyleClassifier().fit("Step 1: x. Step 2: y.", ["stepwise"])


def test_adherence_counts_and_wilson_interval(traces: list[Trace], features: torch.Tensor) -> None:
    """Four stepwise traces and one analogical one, intended stepwise: 4/5 by both measures.

    Wilson by hand, z = 1.96: centre (0.8 + z^2/10) / (1 + z^2/5) = 0.66966, half-width
    z * sqrt(0.8 * 0.2 / 5 + z^2 / 100) / (1 + z^2/5) = 0.29413, so (0.37553, 0.96378).
    """
    classifier = StyleClassifier().fit_features(features, [trace.style for trace in traces])
    texts = [traces[i].reasoning for i in (0, 1, 2, 3, 80)]
    result = adherence(texts, "stepwise", classifier)
    assert result["style"] == "stepwise" and result["n"] == 5
    for measure in ("rules", "classifier"):
        assert result[measure]["count"] == 4 and result[measure]["share"] == 0.8
        assert result[measure]["ci95"] == [pytest.approx(0.37553, abs=1e-5), pytest.approx(0.96378, abs=1e-5)]
        assert result[measure]["detected"] == ["stepwise"] * 4 + ["analogical"]
    plain = adherence(["Steel contains iron, so B."], "default", classifier)["rules"]
    assert (plain["count"], plain["ci95"][1]) == (1, 1.0)


def test_adherence_errors(features: torch.Tensor, traces: list[Trace]) -> None:
    five = StyleClassifier().fit_features(features[_styled(traces)], [traces[i].style for i in _styled(traces)])
    with pytest.raises(ValueError, match="unknown style 'poetic'; valid styles: default, stepwise"):
        adherence(["Step 1: x. Step 2: y."], "poetic", five)
    with pytest.raises(ValueError, match="no texts given"):
        adherence([], "stepwise", five)
    with pytest.raises(ValueError, match="not trained on style 'default'"):
        adherence(["Steel contains iron, so B."], "default", five)


def test_confusion_table() -> None:
    table = confusion(["stepwise", "stepwise", "analogical"], ["stepwise", "default", "analogical"])
    assert table.labels == ("default", "stepwise", "analogical")
    assert table.counts["stepwise"] == {"default": 1, "stepwise": 1, "analogical": 0}
    assert table.total == 3 and table.accuracy == pytest.approx(2 / 3)
    assert str(table).splitlines()[2].split() == ["stepwise", "1", "1", "0"]
    with pytest.raises(ValueError, match="2 intended styles but 1 detected"):
        confusion(["stepwise", "analogical"], ["stepwise"])
    with pytest.raises(ValueError, match="no styles given"):
        confusion([], [])
    with pytest.raises(ValueError, match="unknown style 'Step 1'"):
        confusion(["stepwise"], ["Step 1"])
