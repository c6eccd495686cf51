"""The course guide's generated tables: each notebook's exercises and measured run time, and the session plans.

They are read from the committed notebooks themselves (the exercise cells, and the provenance cell that ends every
notebook), so the guide cannot promise a checker or a time that the notebooks do not have.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import REPOSITORY

# Which notebooks each session of a two-, three- or four-session unit runs (the order of the book).
SESSION_PLANS: dict[int, list[list[int]]] = {
    2: [[1, 3, 4], [5, 6]],
    3: [[1, 2, 3], [4, 5], [6, 7]],
    4: [[1, 2, 3], [4, 5], [6, 7], [8]],
}
EXERCISE_CELL = re.compile(r"^answer_\d+ = ", re.M)
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


@dataclass(frozen=True)
class NotebookFacts:
    """What the committed notebook says about itself."""

    number: int
    name: str
    title: str
    exercises: int
    checked: int  # exercise cells that call a checker of cachesteer_lite.course
    wall_time_s: float
    run_size: str
    device: str


def provenance(notebook: dict[str, Any]) -> dict[str, Any]:
    """The JSON that the notebook's last cell printed (its run size, wall time, versions and hardware)."""
    outputs = notebook["cells"][-1].get("outputs", [])
    text = "".join("".join(output.get("text", "")) for output in outputs)
    if not text:
        raise ValueError("the notebook's provenance cell has no output: execute the notebook first")
    return dict(json.loads(text))


def notebook_facts(path: Path) -> NotebookFacts:
    """Exercises, checkers and the stored run's time of one committed notebook."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    exercise_cells = [''.join(cell["source"]) for cell in cells if EXERCISE_CELL.match(''.join(cell["source"]))]
    title = ''.join(notebook["cells"][0]["source"]).splitlines()[0].lstrip("# ")
    run = provenance(notebook)
    return NotebookFacts(int(path.name[:2]), path.stem, title, len(exercise_cells),
                         sum("exercises.check_" in source for source in exercise_cells), float(run["wall_time_s"]),
                         str(run["run_size"]), str(run["hardware"]["device"]))


def minutes(seconds: float) -> str:
    return "under 1 min" if seconds < 60 else f"{seconds / 60:.0f} min"


def student_colab_url(name: str) -> str:
    """Where the student edition of notebook ``name`` opens on Colab."""
    repository = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repository}/blob/main/course/student/{name}.ipynb"


def exercise_table(facts: list[NotebookFacts]) -> str:
    """One row per notebook: its student edition on Colab, exercises, checkers, and the stored run's wall time."""
    rows = ["| notebook | student edition | exercises | with a checker | stored run: size, device, wall time |",
            "|---|---|---|---|---|"]
    rows += [f"| {{doc}}`{fact.title} <../notebooks/{fact.name}>` | [![Open the student edition in Colab]({BADGE})]"
             f"({student_colab_url(fact.name)}) | {fact.exercises} | {fact.checked} | "
             f"`{fact.run_size}`, {fact.device}, {minutes(fact.wall_time_s)} |" for fact in facts]
    rows.append(f"| all | | {sum(f.exercises for f in facts)} | {sum(f.checked for f in facts)} | "
                f"{minutes(sum(f.wall_time_s for f in facts))} |")
    return "\n".join(rows)


def plan_table(facts: list[NotebookFacts]) -> str:
    """The two-, three- and four-session plans with the stored runs' time of each session's notebooks."""
    by_number = {fact.number: fact for fact in facts}
    sizes = ", ".join(sorted({f"`{fact.run_size}`, {fact.device}" for fact in facts}))
    rows = [f"| unit | session | notebooks | exercises | running them (stored runs: {sizes}) |",
            "|---|---|---|---|---|"]
    for n_sessions, sessions in SESSION_PLANS.items():
        for index, numbers in enumerate(sessions, start=1):
            chosen = [by_number[number] for number in numbers]
            rows.append(f"| {n_sessions} sessions | {index} | {', '.join(str(n) for n in numbers)} | "
                        f"{sum(f.exercises for f in chosen)} | {minutes(sum(f.wall_time_s for f in chosen))} |")
    return "\n".join(rows)


def guide_blocks(notebooks: Path) -> dict[str, str]:
    """The generated blocks of ``book/course_guide.md``, from the notebooks in ``notebooks``."""
    facts = [notebook_facts(path) for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))]
    return {"course-exercises": exercise_table(facts), "course-plans": plan_table(facts)}
