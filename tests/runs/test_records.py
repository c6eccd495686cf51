"""Records on disk: appended safely, read back by key, a torn last line dropped (and repaired only on request),
strict JSON everywhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cachesteer_lite.runs.records import append_records, read_json, read_records, write_json, write_records


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_damaged_items_file_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    cut_short = '{"index": 2, "a"'
    path.write_text('{"index": 0, "a": 1}\n{"index": 1, "a": 2}\n{"index": 0, "a": 3}\n' + cut_short, encoding="utf-8")
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert read_records(path, repair=True) == {0: {"index": 0, "a": 1}, 1: {"index": 1, "a": 2}}
    assert _lines(path) == [{"index": 0, "a": 1}, {"index": 1, "a": 2}]
    path.write_text('{"index": 0}\n{"index": 1', encoding="utf-8")
    assert read_records(path) == {0: {"index": 0}}
    assert path.read_text(encoding="utf-8") == '{"index": 0}\n{"index": 1'  # read, not repaired
    path.write_text('{"index": 0}\nnot json\n{"index": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        read_records(path)


def test_appended_records_read_back_by_any_key(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "records.jsonl"  # folders are created
    append_records(path, [{"task": "piqa", "index": 1, "text": "é"}])
    append_records(path, [{"task": "csqa", "index": 1}, {"task": "piqa", "index": 2}])
    by_pair = read_records(path, key=lambda r: (r["task"], r["index"]))
    assert list(by_pair) == [("piqa", 1), ("csqa", 1), ("piqa", 2)]
    assert "é" in path.read_text(encoding="utf-8")  # kept readable, not escaped
    assert read_records(tmp_path / "absent.jsonl") == {}


def test_rewrites_are_whole_and_strict(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    write_records(path, [{"index": 2}, {"index": 1}])
    assert _lines(path) == [{"index": 2}, {"index": 1}] and not list(tmp_path.glob("*.tmp"))
    write_json(tmp_path / "results.json", {"accuracy": 0.5, "ci95": [0.4, 0.6]})
    assert read_json(tmp_path / "results.json") == {"accuracy": 0.5, "ci95": [0.4, 0.6]}
    for bad in (math.nan, math.inf):  # strict parsers reject NaN and Infinity: never write them
        with pytest.raises(ValueError, match="Out of range float"):
            write_json(tmp_path / "bad.json", {"accuracy": bad})
        with pytest.raises(ValueError, match="Out of range float"):
            append_records(tmp_path / "bad.jsonl", [{"accuracy": bad}])
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "bad.jsonl").exists()
    path.write_text('[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_records(path)
