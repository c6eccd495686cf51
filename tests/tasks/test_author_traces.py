"""The authors' GPT-4o traces, fetched at run time: listed, downloaded once, converted to the trace schema.

The authors' repository stands behind a real HTTP server on loopback that answers in GitHub's listing format;
its files hold records in the authors' documented format (paper-reference section 2.1), written here from the
first training items (the authors' files themselves carry no license and are never copied into the project).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachesteer_lite.__main__ import main
from cachesteer_lite.runs import paper
from cachesteer_lite.tasks import author_traces
from cachesteer_lite.tasks.contrastive import demonstration_pool
from cachesteer_lite.tasks.data import load_items
from cachesteer_lite.tasks.traces import read_traces

from conftest import serving


def authors_folder(root: Path, base_url: str, task: str, records: list[dict]) -> None:
    """Write ``records`` as two of the authors' JSON files of ``task`` under ``root``, with GitHub's listing."""
    folder = author_traces.FOLDERS[task]
    files = root / "local_data" / folder
    files.mkdir(parents=True)
    half = len(records) // 2
    (files / "part_0.json").write_text(json.dumps(records[:half]), encoding="utf-8")
    (files / "part_1.json").write_text(json.dumps(records[half:]), encoding="utf-8")
    listing = [{"name": name, "type": "file", "download_url": f"{base_url}/local_data/{folder}/{name}"}
               for name in ("part_1.json", "part_0.json")] + [{"name": "notes", "type": "dir", "download_url": None}]
    (root / "listings").mkdir(exist_ok=True)
    (root / "listings" / folder).write_text(json.dumps(listing), encoding="utf-8")


def arc_records(n: int) -> list[dict]:
    """The authors' ARC format: ``query`` "Question: ...Choices: ...", ``steps`` and the ``solution`` letter."""
    return [{"query": f"Question: {item.question.split(chr(10))[0]}Choices: {' '.join(item.choices)}",
             "steps": [f"Step about {item.choices[0]}.", "So the answer follows."], "solution": item.answer}
            for item in load_items("arc_challenge", "train", limit=n)]


@pytest.fixture()
def authors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A loopback stand-in for the authors' repository and an empty user cache; yields the served folder."""
    monkeypatch.setenv("CACHESTEER_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "remote"
    root.mkdir()
    with serving(root) as url:
        monkeypatch.setenv(author_traces.LISTING_URL_ENV, url + "/listings/{folder}?ref={commit}")
        yield root, url


def test_the_authors_traces_become_a_trace_file_the_pairs_are_built_from(authors) -> None:
    root, url = authors
    authors_folder(root, url, "arc_challenge", arc_records(6))
    path = author_traces.author_traces_file("arc_challenge")
    traces = read_traces(path)
    items = load_items("arc_challenge", "train", limit=6)
    assert [t.index for t in traces] == list(range(6))  # part_0 before part_1, whatever the listing's order
    assert [t.question for t in traces] == [item.question for item in items]
    assert [t.answer for t in traces] == [item.answer for item in items]
    assert traces[0].provenance["teacher"].startswith("gpt-4o")
    pool = demonstration_pool("arc_challenge", 6, traces=path)
    assert pool[2].reasoning == f"Step about {items[2].choices[0]}. So the answer follows."
    (root / "local_data").rename(root / "gone")  # a second call reads the cache, not the network
    assert author_traces.author_traces_file("arc_challenge") == path


def test_gsm8k_solutions_lose_their_thousands_separators(authors) -> None:
    root, url = authors
    items = load_items("gsm8k", "train", limit=2)
    authors_folder(root, url, "gsm8k", [{"query": item.question, "steps": ["Add.", "Done."],
                                         "solution": f"{int(item.answer):,}"} for item in items])
    traces = read_traces(author_traces.author_traces_file("gsm8k"))
    assert [t.answer for t in traces] == [item.answer for item in items]


def test_records_out_of_the_training_order_are_refused(authors) -> None:
    root, url = authors
    records = arc_records(4)
    records[1], records[2] = records[2], records[1]
    authors_folder(root, url, "arc_challenge", records)
    with pytest.raises(ValueError, match="does not follow the training split's order"):
        author_traces.author_traces_file("arc_challenge")


def test_offline_the_reader_is_told_what_to_use_instead(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CACHESTEER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(author_traces.LISTING_URL_ENV, "http://127.0.0.1:9/{folder}")  # the discard port: refused
    with pytest.raises(author_traces.AuthorTracesUnavailable, match="Offline, use the shipped traces"):
        author_traces.author_traces_file("piqa")
    assert not any(tmp_path.rglob("*.json"))  # nothing half-written is left behind


def test_the_paper_preset_takes_each_models_own_best_settings() -> None:
    assert paper.best_settings("Qwen2-0.5B-Instruct", "csqa", "cache_steering") == {
        "n_demonstrations": 10, "n_pairs": 200, "c_keys": 0.2, "c_values": 4.0}
    assert paper.best_settings("Llama-3.2-3B-Instruct", "csqa", "cache_steering_cot") == {
        "n_demonstrations": 10, "n_pairs": 400, "c_keys": 0.0, "c_values": 6.0}
    assert paper.best_settings("SmolLM2-360M-Instruct", "piqa", "cache_steering") == {
        "n_demonstrations": 10, "n_pairs": 200, "c_keys": 0.0, "c_values": 6.0}
    assert paper.best_settings("Phi-4-mini-instruct", "gsm8k", "baseline") == {}
    assert len(paper.BEST_ARGS) == 24 and set(paper.PAPER_HUB_IDS) == {model for model, _ in paper.BEST_ARGS}


def test_evaluate_with_the_paper_preset_uses_the_authors_traces(authors, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """A real (tiny) run: the preset's settings and traces, with explicit options winning over it."""
    root, url = authors
    authors_folder(root, url, "arc_challenge", arc_records(6))
    assert main(["evaluate", "--preset", "paper", "--task", "arc_challenge", "--method", "cache_steering",
                 "--limit", "2", "--max-new-tokens", "4", "--n-pairs", "6", "--n-demonstrations", "2",
                 "--output-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    result = json.loads(next((tmp_path / "runs").rglob("results.json")).read_text(encoding="utf-8"))
    config = result["config"]
    assert (config["n_pairs"], config["n_demonstrations"]) == (6, 2)  # given on the command line
    assert (config["c_values"], config["c_keys"]) == (6.0, 0.0)  # SmolLM2-360M's ARC row of best_args.yaml
    assert config["traces"].endswith("arc_challenge.jsonl") and "author_traces" in config["traces"]
    with pytest.raises(SystemExit):
        main(["evaluate", "--preset", "paper", "--model", "gemma3-270m", "--task", "piqa", "--method", "baseline"])
    assert "one of the paper's models" in capsys.readouterr().err
