"""Property-based tests of the inputs a user hands the project: whatever the damage or the value, the result is
either valid or the project's own clear error (naming the file or the parameter), never another exception, and
never a changed or lost record. Slow lane: 200 examples per property."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachesteer_lite import SteeringVector, generate, model_fingerprint
from cachesteer_lite.__main__ import parser
from cachesteer_lite.core.vector_files import VectorFileError
from cachesteer_lite.core.vectors import VectorMetadata
from cachesteer_lite.runs.cli import _config
from cachesteer_lite.runs.methods import get_method
from cachesteer_lite.runs.records import append_records, json_line, read_records
from cachesteer_lite.runs.runner import check_config
from cachesteer_lite.tasks.traces import Trace, read_traces, validate_traces

from conftest import REPO, tiny_model

pytestmark = pytest.mark.slow
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=3), max_leaves=6)
PIQA_LINES = (REPO / "data" / "traces" / "piqa.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:3]


def _mutated_line(line: str, field: str, action: str, value: object) -> str:
    record = json.loads(line)
    if action == "drop":
        record.pop(field, None)
    else:
        record[field] = value
    return json.dumps(record, ensure_ascii=False) + "\n"


@EXAMPLES
@given(which=st.integers(0, 2), field=st.sampled_from(sorted(json.loads(PIQA_LINES[0])) + ["extra"]),
       action=st.sampled_from(["drop", "set"]), value=JSON_VALUES, cut=st.integers(0, 4000),
       noise=st.binary(max_size=6), noise_at=st.integers(0, 4000))
def test_a_damaged_trace_file_reads_or_fails_naming_the_file(which, field, action, value, cut, noise, noise_at):
    lines = list(PIQA_LINES)
    lines[which] = _mutated_line(lines[which], field, action, value)
    data = "".join(lines).encode("utf-8")
    data = data[:noise_at] + noise + data[noise_at:]
    data = data[: max(cut, len(data) - 4000)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "traces.jsonl"
        path.write_bytes(data)
        try:
            traces = read_traces(path)
        except ValueError as error:
            assert str(error).startswith(str(path)), error
            return
    assert all(isinstance(trace, Trace) for trace in traces)
    assert all(isinstance(problem, str) for problem in validate_traces(traces))  # checking never raises


@pytest.fixture(scope="module")
def tiny_vector():
    model = tiny_model()
    generator = torch.Generator().manual_seed(0)
    meta = VectorMetadata(model.name_or_alias, model_fingerprint(model), -1, ["\n"], 2)
    return model, SteeringVector(torch.randn(3, 2, 16, generator=generator), torch.randn(3, 2, 16, generator=generator),
                                 meta)


@EXAMPLES
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
       cut=st.one_of(st.none(), st.integers(0, 10_000)), field=st.sampled_from(
           ["model_id", "fingerprint", "token_offset", "token_texts", "n_pairs", "created", "notes", "tensors_sha256",
            "colour"]),
       action=st.sampled_from(["keep", "drop", "set", "replace"]), value=JSON_VALUES)
def test_a_damaged_vector_file_loads_intact_or_fails_clearly(tiny_vector, flips, cut, field, action, value):
    model, vector = tiny_vector
    with tempfile.TemporaryDirectory() as folder:
        tensors_path, meta_path = vector.save(Path(folder) / "v")
        data = bytearray(tensors_path.read_bytes())
        for position, byte in flips:
            data[position % len(data)] = byte
        tensors_path.write_bytes(bytes(data[:cut] if cut is not None else data))
        fields = json.loads(meta_path.read_text())
        if action == "drop":
            fields.pop(field, None)
        elif action == "set":
            fields[field] = value
        meta_path.write_text(json.dumps(value if action == "replace" else fields))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = SteeringVector.load(meta_path)
        except VectorFileError as error:
            assert str(meta_path.with_suffix("")) in str(error), error
            return
    unverified = any("records no checksum" in str(warning.message) for warning in caught)
    if not unverified:  # the checksum guarantees the tensors are the ones saved
        assert torch.equal(loaded.keys, vector.keys) and torch.equal(loaded.values, vector.values)
    else:  # a file without a checksum (written before they were) loads what it holds, and says so
        assert action in ("drop", "set") and field == "tensors_sha256"
    assert loaded.keys.shape == (3, 2, 16) and bool(torch.isfinite(loaded.values).all())


@pytest.fixture(scope="module")
def steering_setup(smollm2, tiny_vector):
    return smollm2[1], *tiny_vector


@EXAMPLES
@given(value=st.one_of(st.floats(), st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=4), st.none(),
                       st.lists(st.floats(), max_size=2), st.complex_numbers(max_magnitude=2)))
def test_any_coefficient_either_steers_or_is_refused_by_name(steering_setup, value):
    tokenizer, model, vector = steering_setup
    try:
        answers = generate(model, tokenizer, ["Hi"], vector, c_values=value, max_new_tokens=1, progress=False)
    except (TypeError, ValueError) as error:
        assert "c_values" in str(error), error
        assert isinstance(value, (bool, str, list, complex)) or not math.isfinite(value), value
        return
    assert len(answers) == 1 and (value is None or math.isfinite(value))


OPTIONS = ["--c-values", "--c-keys", "--limit", "--batch-size", "--max-new-tokens", "--n-pairs", "--n-demonstrations",
           "--multiplier", "--layer", "--top-p", "--temperature", "--seeds", "--layers", "--selection-seed"]


@EXAMPLES
@given(option=st.sampled_from(OPTIONS), text=st.one_of(st.text(max_size=6), st.floats().map(str),
                                                        st.integers(-5, 500).map(str)),
       method=st.sampled_from(["cache_steering", "caa", "baseline"]), sampling=st.booleans())
def test_any_command_line_value_is_parsed_or_refused_as_usage(capsys, option, text, method, sampling):
    argv = ["evaluate", "--task", "arc_challenge", "--method", method, *(["--sampling"] if sampling else []),
            f"{option}={text}"]
    try:
        args = parser().parse_args(argv)
    except SystemExit as stopped:
        assert stopped.code == 2 and "Traceback" not in capsys.readouterr().err
        return
    try:  # what run_evaluate checks before loading the model; a failure there becomes a usage error
        check_config(_config(args, "arc_challenge", get_method(method)))
    except (TypeError, ValueError) as error:
        assert str(error)


RECORDS = st.lists(st.fixed_dictionaries({"index": st.integers(0, 6), "response": st.text(max_size=12)}),
                   min_size=1, max_size=8)


@EXAMPLES
@given(records=RECORDS, cut=st.integers(0, 2000), repeat=st.one_of(st.none(), st.integers(0, 7)))
def test_a_cut_or_repeated_records_file_keeps_every_complete_record(records, cut, repeat):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.jsonl"
        for record in records:
            append_records(path, [record])
        data = path.read_bytes()
        if repeat is not None:  # a record written twice (a resumed run that repeated an item)
            data += json_line(records[repeat % len(records)]).encode("utf-8")
        cut = min(cut, len(data))
        path.write_bytes(data[:cut])
        complete = [json.loads(line) for line in data[:cut].split(b"\n")[:-1]]  # lines that were fully written
        expected: dict[int, dict] = {}
        for record in complete:
            expected.setdefault(record["index"], record)
        found = read_records(path)
        assert {k: v for k, v in found.items() if k in expected} == expected  # nothing complete is lost or changed
        last = data[:cut].split(b"\n")[-1]  # cut before its newline: kept only when it is a whole record
        assert set(found) - set(expected) <= ({json.loads(last)["index"]} if _parses(last) else set())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            repaired = read_records(path, repair=True)
        assert repaired == found and read_records(path) == found  # the repaired file reads back the same
        assert path.read_bytes().endswith(b"\n") or not found


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
