"""Contrastive sets: the first N train items, demonstrations from the same pool (never the target),
nearest neighbours by all-MiniLM-L6-v2 or a seeded random draw, and the paper's answer formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cachesteer_lite import COT_PREFIX
from cachesteer_lite.tasks.contrastive import (
    DEVIATIONS,
    build_contrastive_set,
    default_traces_path,
    demonstration_pool,
    nearest_neighbours,
    random_neighbours,
)
from cachesteer_lite.tasks.data import load_items
from cachesteer_lite.tasks.embeddings import embed, embedder_path
from cachesteer_lite.tasks.task import get_task, gsm8k_reasoning


def test_offset_token_per_task() -> None:
    assert get_task("gsm8k").offset == " "
    assert {get_task(task).offset for task in ("arc_challenge", "csqa", "piqa")} == {"\n"}
    with pytest.raises(ValueError, match="valid tasks"):
        get_task("mmlu")


def test_gsm8k_pool_uses_the_train_solutions() -> None:
    pool = demonstration_pool("gsm8k", 3)
    items = load_items("gsm8k", "train", limit=3)
    assert [demo.question for demo in pool] == [item.question for item in items]
    assert pool[0].reasoning == gsm8k_reasoning(items[0].raw["answer"]) and pool[0].answer == "72"


def test_trace_pool_follows_train_order() -> None:
    pool = demonstration_pool("piqa", 4)
    assert [demo.question for demo in pool] == [item.question for item in load_items("piqa", "train", limit=4)]
    assert pool[0].question.startswith("When boiling butter")


def _trace_lines(task: str, count: int) -> list[dict]:
    with default_traces_path(task).open(encoding="utf-8") as handle:
        return [json.loads(handle.readline()) for _ in range(count)]


def test_pool_larger_than_the_trace_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _trace_lines("csqa", 3)), encoding="utf-8")
    assert len(demonstration_pool("csqa", 3, path)) == 3
    with pytest.raises(ValueError, match=r"traces for 3 csqa train items but not for item\(s\) \[3\]"):
        demonstration_pool("csqa", 4, path)


def test_stale_trace_question_is_refused(tmp_path: Path) -> None:
    records = _trace_lines("arc_challenge", 2)
    records[1]["question"] = records[1]["question"].replace("magnets", "stickers")
    path = tmp_path / "stale.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(ValueError, match="item 1 has a different question"):
        demonstration_pool("arc_challenge", 2, path)


def test_nearest_neighbours_exclude_self_nearest_first_ties_stable() -> None:
    embeddings = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.9, 0.1]]), dim=1)
    assert nearest_neighbours(embeddings, 2) == [[1, 3], [3, 0], [1, 3], [1, 0]]
    with pytest.raises(ValueError, match="cannot choose 4 demonstrations"):
        nearest_neighbours(embeddings, 4)


def test_random_neighbours_are_seeded_and_exclude_self() -> None:
    draw = random_neighbours(10, 3, seed=5)
    assert draw == random_neighbours(10, 3, seed=5) != random_neighbours(10, 3, seed=6)
    assert all(i not in row and len(set(row)) == 3 for i, row in enumerate(draw))


def test_embeddings_match_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    questions = [item.question for item in load_items("arc_challenge", "train", limit=10)]
    ours = embed(questions)
    reference = SentenceTransformer(str(embedder_path()), device="cpu").encode(questions, normalize_embeddings=True)
    assert ours.shape == (10, 384)
    torch.testing.assert_close(ours, torch.tensor(reference), atol=1e-5, rtol=0)


def test_nearest_set_pairs(smollm2) -> None:
    _, tokenizer = smollm2
    built = build_contrastive_set(tokenizer, "arc_challenge", n_pairs=6, n_demonstrations=2)
    pool = demonstration_pool("arc_challenge", 6)
    embeddings = embed([demo.question for demo in pool])
    assert built.demonstrations == nearest_neighbours(embeddings, 2)
    for target, (chosen, (positive, negative)) in enumerate(zip(built.demonstrations, built.pairs, strict=True)):
        assert target not in chosen
        distances = [1 - float(embeddings[target] @ embeddings[j]) for j in chosen]
        assert distances == sorted(distances)  # nearest first
        first, second = pool[chosen[0]], pool[chosen[1]]
        assert positive.index(first.question) < positive.index(second.question) < positive.rindex(pool[target].question)
        assert f"{first.reasoning} The answer is {first.answer}." in positive
        assert f"\n The answer is {first.answer}.<|im_end|>" in negative  # SmolLM2's template keeps the space
        assert first.reasoning not in negative
        assert positive.endswith("<|im_start|>assistant\n") and negative.endswith("<|im_start|>assistant\n")
    assert built.settings["reasoning_source"] == "data/traces/arc_challenge.jsonl"


def test_random_set_with_cot_prefix(smollm2) -> None:
    _, tokenizer = smollm2
    built = build_contrastive_set(tokenizer, "gsm8k", n_pairs=5, n_demonstrations=2, selection="random", seed=1,
                                  cot_prefix=True)
    assert built.demonstrations == random_neighbours(5, 2, seed=1)
    ending = "assistant\n" + COT_PREFIX
    assert all(p.endswith(ending) and n.endswith(ending) for p, n in built.pairs)
    assert built.settings["seed"] == 1 and built.settings["reasoning_source"] == "gsm8k train solutions"
    with pytest.raises(ValueError, match="valid selections: nearest, random"):
        build_contrastive_set(tokenizer, "gsm8k", n_pairs=5, n_demonstrations=2, selection="farthest")


def test_deviations_are_printable() -> None:
    assert all(len(row) == 4 and all(row) for row in DEVIATIONS)


def test_style_set_uses_the_traces_of_that_style(smollm2) -> None:
    """The style-transfer vectors: positive demonstrations written in one style, negatives answer-only."""
    _, tokenizer = smollm2
    styles = default_traces_path("arc_challenge").with_name("arc_challenge_styles.jsonl")
    built = build_contrastive_set(tokenizer, "arc_challenge", n_pairs=20, n_demonstrations=3, traces=styles,
                                  style="stepwise")
    assert built.settings["style"] == "stepwise" and len(built.pairs) == 20
    assert all(positive.count("Step 1") == 3 and "Step 1" not in negative for positive, negative in built.pairs)
    analogical = build_contrastive_set(tokenizer, "arc_challenge", n_pairs=20, n_demonstrations=3, traces=styles,
                                       style="analogical")
    assert analogical.pairs != built.pairs  # the same questions and neighbours: only the positives differ
    assert [n for _, n in analogical.pairs] == [n for _, n in built.pairs]
    with pytest.raises(ValueError, match="has 'stepwise' traces for 20"):
        build_contrastive_set(tokenizer, "arc_challenge", n_pairs=21, n_demonstrations=3, traces=styles,
                              style="stepwise")
