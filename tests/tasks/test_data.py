"""Task data: questions formatted exactly as the paper formats them, and clear errors for unknown names."""

from __future__ import annotations

import re

import pytest

from cachesteer_lite.tasks.data import load_items, load_rows, to_item
from cachesteer_lite.tasks.task import TASKS, get_task, gsm8k_final_number, gsm8k_reasoning


def test_unknown_task_lists_the_valid_tasks() -> None:
    message = "unknown task 'mmlu'; valid tasks: gsm8k, arc_challenge, csqa, piqa"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_items("mmlu")


def test_unknown_split_lists_the_task_splits() -> None:
    message = "unknown split 'test' for task 'csqa'; valid splits: train, validation"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_items("csqa", "test")
    assert get_task("arc_challenge").check_split("validation") == "validation"


def test_evaluation_splits_are_the_papers() -> None:
    eval_splits = {name: task.eval_split for name, task in TASKS.items()}
    assert eval_splits == {"gsm8k": "test", "arc_challenge": "test", "csqa": "validation", "piqa": "validation"}


def test_arc_format_has_a_choices_header() -> None:
    item = load_items("arc_challenge", "train", limit=1)[0]
    assert item.question == (
        "George wants to warm his hands quickly by rubbing them. Which skin surface will produce the most heat?"
        "\n\nChoices:\nA: dry palms\nB: wet palms\nC: palms covered with oil\nD: palms covered with lotion"
    )
    assert item.answer == "A" and item.labels == ("A", "B", "C", "D")


def test_arc_numeric_labels_become_letters() -> None:
    items = load_items("arc_challenge", "test", limit=50)
    numeric = [item for item in items if item.raw["choices"]["label"][0].isdigit()]
    assert numeric, "the first 50 ARC test items include one with labels 1-4"
    for item in numeric:
        gold_position = item.raw["choices"]["label"].index(item.raw["answerKey"])
        assert item.answer == "ABCDE"[gold_position]
        assert "\nA: " in item.question and "\n1: " not in item.question


def test_csqa_format_has_no_choices_header() -> None:
    item = load_items("csqa", "train", limit=1)[0]
    assert item.question.startswith("The sanctions against the school were a punishing blow")
    assert "Choices:" not in item.question
    assert re.search(r"\?\nA: [^\n]+\nB: [^\n]+\nC: [^\n]+\nD: [^\n]+\nE: [^\n]+$", item.question)


def test_piqa_format() -> None:
    row = load_rows("piqa", "train", limit=1)[0]
    item = to_item("piqa", "train", 0, row)
    assert item.question == f"{row['goal']}\n\nChoices:\nA: {row['sol1']}\nB: {row['sol2']}"
    assert item.answer == "AB"[row["label"]]


def test_gsm8k_question_is_raw_and_answer_a_number() -> None:
    row = load_rows("gsm8k", "test", limit=1)[0]
    item = load_items("gsm8k", limit=1)[0]
    assert item.question == row["question"] and item.answer == "18" and item.choices == ()


def test_gsm8k_final_number_drops_thousands_commas() -> None:
    assert gsm8k_final_number("He has 1,000 + 200 = 1,200 apples.\n#### 1,200") == "1200"


def test_gsm8k_reasoning_follows_the_paper_recipe() -> None:
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.  \n#### 72"
    assert gsm8k_reasoning(solution) == "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips."
    for row in load_rows("gsm8k", "train", limit=200):
        body = row["answer"].split("#### ")[0]
        assert gsm8k_reasoning(row["answer"]) == re.sub(r"<<.*?>>", "", body.replace("\n", " ")).strip()


def test_start_and_limit_keep_row_indices() -> None:
    items = load_items("piqa", "train", limit=3, start=5)
    assert [item.index for item in items] == [5, 6, 7]
    assert items[0] == load_items("piqa", "train", limit=6)[5]
    with pytest.raises(ValueError, match="must not be negative"):
        load_items("piqa", "train", start=-1)


def test_hub_loading_while_offline_says_how_to_use_local_files(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.delenv("CACHESTEER_DATA_DIR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="CACHESTEER_DATA_DIR"):
        load_rows("arc_challenge", "train", limit=1)
