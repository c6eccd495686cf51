"""The book's notebooks: their teaching code equals the library, and every notebook follows the book's pattern.

Where a notebook re-implements a library step to teach it, the cell holding that code carries the tag
``teaching``. The tests here run exactly that cell's source and compare its results with the library's.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from cachesteer_lite import files

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
REPOSITORY = files.REPOSITORY.removeprefix("https://github.com/").strip("/")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def teaching_code(name: str) -> dict:
    """Run the cells tagged ``teaching`` of notebook ``name`` and return the names they define."""
    notebook = read(REPO / "notebooks" / name)
    sources = [cell.source for cell in notebook.cells if "teaching" in cell.metadata.get("tags", [])]
    assert sources, f"{name} has no cell tagged 'teaching'"
    namespace: dict = {"torch": torch}
    for source in sources:
        exec(compile(source, f"{name}[teaching]", "exec"), namespace)
    return namespace


# --- notebook 3: the steering vector by hand ---------------------------------------------------------------

def test_mean_difference_by_hand_equals_library(smollm2):
    """Notebook 3's mean_difference, applied to read_prompt_kv, gives extract_steering_vector's vector exactly."""
    import cachesteer_lite as cs
    from cachesteer_lite.core.vectors import read_prompt_kv

    model, tokenizer = smollm2
    teaching = teaching_code("03_steering_vector_extraction.ipynb")
    demos = [
        cs.Demonstration("What is 12 * 3?", "10 * 3 = 30 and 2 * 3 = 6, so 12 * 3 = 30 + 6 = 36.", "36"),
        cs.Demonstration("What is 9 + 14?", "9 + 14 = 9 + 10 + 4 = 23.", "23"),
    ]
    pairs = [cs.contrastive_pair(tokenizer, demos, q) for q in ("What is 7 * 8?", "What is 15 + 27?", "What is 5 - 9?")]
    keys, values, _ = read_prompt_kv(model, tokenizer, [p for p, _ in pairs] + [n for _, n in pairs], progress=False)

    by_hand_keys, by_hand_values = teaching["mean_difference"](keys, values, len(pairs))
    vector = cs.extract_steering_vector(model, tokenizer, pairs, progress=False)
    assert torch.equal(by_hand_keys, vector.keys)
    assert torch.equal(by_hand_values, vector.values)
    assert float(by_hand_values[0].abs().max()) == 0.0  # the exact zero at layer 0 the notebook shows


def test_pairwise_cosine_equals_torch():
    """Notebook 3's pairwise_cosine equals torch's cosine_similarity for every pair of rows, zero rows included."""
    pairwise_cosine = teaching_code("03_steering_vector_extraction.ipynb")["pairwise_cosine"]
    rows = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.cosine_similarity(rows.flatten(1)[:, None], rows.flatten(1)[None], dim=-1)
    torch.testing.assert_close(pairwise_cosine(rows), expected)
    rows[2] = 0.0  # layer-0 value differences are exactly zero: no NaN
    assert not pairwise_cosine(rows).isnan().any()


# --- every notebook follows the book's pattern ------------------------------------------------------------

@pytest.fixture(params=NOTEBOOKS, ids=lambda path: path.stem)
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, read(request.param)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks in notebooks/"


def test_listed_in_table_of_contents(notebook):
    path, _ = notebook
    assert f"notebooks/{path.stem}" in (REPO / "_toc.yml").read_text(), f"{path.name} is not in _toc.yml"


def test_the_repository_url_is_the_packages():
    """The book's buttons and the package metadata name the repository that cachesteer_lite.files downloads from."""
    assert CONFIG["repository"]["url"] == files.REPOSITORY
    assert f'Homepage = "{files.REPOSITORY}"' in (REPO / "pyproject.toml").read_text()


def test_install_cell_installs_from_the_repository(notebook):
    path, nb = notebook
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert f"@ git+{files.REPOSITORY}" in first_code.source, f"{path.name}: install from {files.REPOSITORY}"
    assert "google.colab" in first_code.source  # only on Colab: a clone or a pip install has the package already


def test_colab_badge_opens_this_notebook(notebook):
    path, nb = notebook
    first = nb.cells[0].source
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{path.name}"
    assert f"({url})" in first, f"the first cell of {path.name} needs the Colab badge linking {url}"


def test_parameters_come_from_the_environment(notebook):
    path, nb = notebook
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert 'os.environ.get("CACHESTEER_MODEL", "smollm2-135m-instruct")' in code, path.name
    assert re.search(r'os\.environ\.get\("CACHESTEER_RUN_SIZE", "full" if torch\.cuda\.is_available\(\) else "quick"\)',
                     code), path.name
    assert 'DTYPE = os.environ.get("CACHESTEER_DTYPE", "auto")' in code, path.name
    assert "cs.load_model(MODEL)" not in code, f"{path.name}: load the model with dtype=DTYPE"


def test_ends_with_provenance(notebook):
    path, nb = notebook
    last = nb.cells[-1]
    assert last.cell_type == "code" and "run_record()" in last.source and "wall_time_s" in last.source, path.name


def test_solutions_are_folded(notebook):
    path, nb = notebook
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "{admonition} Solution" in cell.source:
            blocks = re.findall(r"\{admonition\} Solution[^\n]*\n(.*?)\n", cell.source)
            assert all(":class: dropdown" in block for block in blocks), f"{path.name}: a solution is not folded"


def test_committed_outputs_come_from_one_clean_run(notebook):
    """A notebook committed with outputs was executed top to bottom in one kernel, without errors."""
    path, nb = notebook
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert not any(out.output_type == "error" for cell in code for out in cell.get("outputs", [])), path.name
    if any(cell.get("outputs") for cell in code):
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
            f"{path.name}: execute it in one run (jupyter nbconvert --to notebook --execute --inplace)")


# --- notebook 8: the look-ahead loss by hand ----------------------------------------------------------------

def test_lookahead_loss_by_hand_equals_library(smollm2):
    """Notebook 8's lookahead_loss_by_hand is the library's look-ahead loss of the plain model (N_L = 0)."""
    from cachesteer_lite.augmentation.lookahead import lookahead_losses, make_batch

    model, tokenizer = smollm2
    by_hand = teaching_code("08_cache_augmentation.ipynb")["lookahead_loss_by_hand"]
    texts = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
             "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total?"]
    token_lists = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    samples = [(0, 9), (1, 5), (0, 14)]
    with torch.no_grad():
        library = lookahead_losses(model, None, make_batch(token_lists, samples, 4, model.device))
    for row, (text, split) in enumerate(samples):
        torch.testing.assert_close(by_hand(model, token_lists[text], split, 4), library[row], atol=1e-4, rtol=1e-4)


def test_no_widget_outputs(notebook):
    """Progress-bar widgets need require.js from a CDN, which the book's pages must not depend on: notebooks pass
    ``progress=False`` to the library's long loops."""
    path, nb = notebook
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in outputs), path.name
    assert "widgets" not in nb.metadata, f"{path.name}: widget state saved with the notebook"


def test_every_figure_has_alt_text(notebook):
    """Each cell that draws a figure says what it shows in ``mystnb.image.alt``: without it the page's image reads
    as its file name to a screen reader, and the site check (scripts/check_site.py) fails at the end of CI."""
    path, nb = notebook
    for index, cell in enumerate(nb.cells):
        draws = cell.cell_type == "code" and ("plt.show()" in cell.source
                                              or any("image/png" in out.get("data", {})
                                                     for out in cell.get("outputs", [])))
        if draws:
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt.split()) >= 5, f"{path.name}, cell {index}: a figure without alt text"
