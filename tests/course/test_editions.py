"""The course kit: the student and teacher editions are generated, current and leak-free, every exercise has a
checker, and every checker has a test."""

from __future__ import annotations

import ast
import subprocess
import sys

import nbformat
import pytest

from cachesteer_lite.course import guide
from scripts import course_editions as editions

from conftest import REPO

COURSE_MODULES = sorted((REPO / "cachesteer_lite" / "course").glob("*.py"))


def test_committed_editions_are_current_and_leak_no_solution():
    result = subprocess.run([sys.executable, "scripts/course_editions.py", "check"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", editions.notebook_paths(), ids=lambda path: path.name[:2])
def test_every_exercise_has_a_checker(path):
    facts = guide.notebook_facts(path)
    assert facts.exercises >= 2 and facts.checked == facts.exercises, facts


def test_leak_check_finds_a_solution_line():
    source = nbformat.read(editions.notebook_paths()[0], as_version=4)
    student = nbformat.read(REPO / "course" / "student" / editions.notebook_paths()[0].name, as_version=4)
    assert editions.leaks(source, student) == []
    secret = sorted(editions.solution_lines(source))[0]
    answer = next(cell for cell in student.cells if cell.source.startswith("answer_1"))
    answer.source += "\n" + secret
    assert editions.leaks(source, student) == [secret]


def test_teacher_edition_shows_solutions_and_their_checks():
    for path in editions.notebook_paths():
        teacher = nbformat.read(REPO / "course" / "teacher" / path.name, as_version=4)
        text = "\n".join(cell.source for cell in teacher.cells)
        assert "**Solution to exercise 1.**" in text and "{admonition}" not in text, path.name
        checks = [cell for cell in teacher.cells if "The reference solutions pass their checkers" in cell.source]
        assert len(checks) == 1 and "HIDDEN TESTS" not in checks[0].source, path.name
        assert not any("remove-cell" in cell.metadata.get("tags", []) for cell in checks), path.name


def test_every_checker_is_tested():
    """Each check_* function of cachesteer_lite.course is called in tests/course."""
    defined = {node.name for path in COURSE_MODULES for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.FunctionDef) and node.name.startswith("check_")}
    tests = "\n".join(path.read_text() for path in (REPO / "tests" / "course").glob("test_*.py"))
    assert defined and not [name for name in sorted(defined) if name not in tests]


def test_slides_have_a_slide_per_section_and_no_solution(tmp_path, monkeypatch):
    first = editions.notebook_paths()[0]
    monkeypatch.setattr(editions, "notebook_paths", lambda: [first])
    editions.slides(tmp_path)
    deck = (tmp_path / f"{first.stem}.slides.html").read_text()
    source = nbformat.read(first, as_version=4)
    headings = sum(cell.cell_type == "markdown" and cell.source.startswith(("# ", "## ")) for cell in source.cells)
    assert "reveal" in deck and deck.count('<section') >= headings >= 5
    assert "Solution to exercise" not in deck and "HIDDEN TESTS" not in deck and "google.colab" not in deck
