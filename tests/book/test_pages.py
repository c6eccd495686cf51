"""The reproducibility page's generated blocks: the results table and the deviation tables, exactly what the code
and the stored results say (rerun ``python -m cachesteer_lite pages`` after changing either)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from cachesteer_lite import book, files
from cachesteer_lite.__main__ import main
from cachesteer_lite.core.deviations import markdown_table

from conftest import REPO


def test_with_blocks_rewrites_only_the_named_blocks() -> None:
    page = "# Title\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\nMiddle.\n<!-- b:start -->\n<!-- b:end -->\nAfter.\n"
    assert book.with_blocks(page, {"a": "| new |", "b": "x\\1"}) == (
        "# Title\n\n<!-- a:start -->\n| new |\n<!-- a:end -->\n\nMiddle.\n"
        "<!-- b:start -->\nx\\1\n<!-- b:end -->\nAfter.\n")
    with pytest.raises(ValueError, match="exactly one <!-- c:start -->"):
        book.with_blocks(page, {"c": "x"})


def test_every_deviation_says_what_the_paper_did_what_we_do_and_why() -> None:
    rows = [row for group in book.DEVIATION_GROUPS.values() for row in group]
    assert all(len(row) == 4 and all(isinstance(cell, str) and cell.strip() for cell in row) for row in rows)
    whats = [row.what for row in rows]
    assert len(whats) == len(set(whats)), "a deviation is listed twice"
    table = markdown_table(rows).splitlines()
    assert len(table) == len(rows) + 2
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 5 for line in table)  # a bar in a cell is escaped


def test_pages_are_generated_from_the_code_and_the_stored_results(capsys: pytest.CaptureFixture) -> None:
    blocks = book.page_blocks()
    assert set(blocks) == {book.PAGE, book.README, book.COURSE_GUIDE, book.COLAB_PAGE, book.LANDING_PAGE}
    for page, page_blocks in blocks.items():
        text = (REPO / page).read_text(encoding="utf-8")
        assert book.with_blocks(text, page_blocks) == text, f"{page}: run python -m cachesteer_lite pages"
    assert main(["pages", "--check"]) == 0
    assert capsys.readouterr().out.count("up to date") == len(book.generated_files())


def test_the_repository_url_is_set_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only files.py names the repository; every other file that links to it is written by ``pages`` (or made
    from the notebooks: the course editions), so a fork changes one line and regenerates."""
    name = files.repository_name()  # in every URL form: github.com/NAME, colab.../github/NAME, git+https://...
    tracked = subprocess.run(["git", "grep", "-l", "-F", name], cwd=REPO, capture_output=True, text=True).stdout.split()
    generated = set(book.generated_files()) | {"cachesteer_lite/files.py"}
    made_from_notebooks = {path for path in tracked if path.startswith("course/")}
    assert set(tracked) - made_from_notebooks <= generated, "a file names the repository but is not generated"
    assert "cachesteer_lite/files.py" in tracked and "_config.yml" in tracked and "README.md" in tracked


def test_a_fork_changes_one_line_and_every_link_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {name: (REPO / name).read_text(encoding="utf-8") for name in book.generated_files()}
    original = files.repository_name()
    monkeypatch.setattr(files, "REPOSITORY", "https://github.com/a-teacher/kv-course")
    monkeypatch.setattr(files, "BRANCH", "spring-2027")
    forked = {name: book.with_repository_links(text) for name, text in pages.items()}
    everything = "\n".join(forked.values())
    assert original not in everything
    assert "colab.research.google.com/github/a-teacher/kv-course/blob/spring-2027/notebooks/01_" in everything
    assert "git+https://github.com/a-teacher/kv-course@spring-2027" in forked["notebooks/01_kv_cache_internals.ipynb"]
    assert "  url: https://github.com/a-teacher/kv-course\n  path_to_book" in forked["_config.yml"]
    assert "  branch: spring-2027" in forked["_config.yml"]
    assert 'Homepage = "https://github.com/a-teacher/kv-course"' in forked["pyproject.toml"]
    monkeypatch.undo()
    assert {name: book.with_repository_links(text) for name, text in forked.items()} == pages  # and back


def test_speed_table_shows_the_stored_benchmark_ratios() -> None:
    report = json.loads((REPO / "data" / "results" / book.CORE_BENCHMARK).read_text(encoding="utf-8"))
    table = book.speed_table(report)
    for e in report["extraction"]:
        assert f"{e['ratio_default_over_one_at_a_time']:.2f}x" in table
    for ratio in ("ratio_sorted_over_dataset_order", "ratio_sorted_over_split_90"):
        assert f"{report['evaluation'][ratio]:.2f}x" in table
    assert table.count("\n|") == 2 + len(report["decoding"]) + len(report["extraction"]) + 2
