"""Data-parallel runs: two CPU processes started by ``torch.distributed.run`` (what ``torchrun`` runs) share one
run directory, answer every item exactly once, answer it as a single process would, and resume a run that a
single process began."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cachesteer_lite.runs.config import EvalConfig
from cachesteer_lite.runs.parallel import World, batch_share, current_world
from cachesteer_lite.runs.records import append_new_records, read_records
from cachesteer_lite.runs.runner import evaluate, run_directory

from conftest import REPO

MODEL, TASK, METHOD = "smollm2-135m-instruct", "arc_challenge", "baseline"
CONFIG = EvalConfig(TASK, METHOD, limit=6, batch_size=2, max_new_tokens=4)  # what the command line below asks for
ARGUMENTS = ["evaluate", "--task", TASK, "--method", METHOD, "--model", MODEL, "--limit", "6", "--batch-size", "2",
             "--max-new-tokens", "4"]


def free_port() -> int:
    """A TCP port nobody listens on now, for the processes to meet at."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two(output_dir: Path) -> None:
    """``torchrun --nproc_per_node 2 -m cachesteer_lite evaluate ...`` on the CPU (gloo), one thread a process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "cachesteer_lite", *ARGUMENTS, "--output-dir", str(output_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count(f"{TASK} {METHOD}: accuracy") == 1  # printed by the main process only


def lines(path: Path) -> list[dict]:
    """Every line of a JSON Lines file, parsed (a torn or interleaved line fails here)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def answers(records: list[dict]) -> dict[int, dict]:
    """Records by item index without their timing, which differs from run to run."""
    return {r["index"]: {k: v for k, v in r.items() if k != "batch_seconds"} for r in records}


def test_the_world_comes_from_the_launchers_environment() -> None:
    assert current_world({}) == World(0, 1, 0) and not current_world({}).parallel
    world = current_world({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == World(3, 4, 1) and world.parallel and not world.is_main
    with pytest.raises(ValueError, match="RANK 4"):
        current_world({"RANK": "4", "WORLD_SIZE": "4"})
    pending = [0, 2, 3, 5, 7]
    shares = [batch_share(pending, World(rank, 2)) for rank in range(2)]
    assert shares == [[0, 3, 7], [2, 5]] and batch_share(pending, World()) == pending


def _append_all(path: str) -> None:
    """One writer: every key of 0..199, five at a time, with a payload long enough to tear if writes interleaved."""
    for start in range(0, 200, 5):
        append_new_records(Path(path), [{"index": i, "text": "x" * 3000} for i in range(start, start + 5)])


def test_concurrent_writers_store_each_record_once(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    writers = [multiprocessing.get_context("fork").Process(target=_append_all, args=(str(path),)) for _ in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    assert sorted(r["index"] for r in lines(path)) == list(range(200))
    assert append_new_records(path, [{"index": 7}, {"index": 200}]) == [{"index": 200}]


def test_a_writer_waits_while_another_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    # Another writer between its read and its write: a process that holds the lock until its input closes.
    hold = ("import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print(1, flush=True); "
            "sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        assert holder.stdout is not None and holder.stdin is not None and holder.stdout.readline() == "1\n"
        writer = threading.Thread(target=append_new_records, args=(path, [{"index": 0}]))
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive() and path.read_text(encoding="utf-8") == ""
        holder.stdin.close()  # the holder ends, and its lock with it
    writer.join(timeout=60)
    assert not writer.is_alive() and lines(path) == [{"index": 0}]


@pytest.mark.slow
def test_two_processes_answer_every_item_once_as_one_process_does(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    single = evaluate(model, tokenizer, CONFIG, tmp_path / "single", progress=False)
    launch_two(tmp_path)
    run_dir = run_directory(tmp_path, MODEL, TASK, METHOD)
    stored = lines(run_dir / "items.jsonl")
    assert sorted(r["index"] for r in stored) == list(range(6))  # each item once
    assert answers(stored) == answers(lines(tmp_path / "single" / "items.jsonl"))  # the same batches, answers
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["n"] == 6 and results["accuracy"] == single["accuracy"]
    sessions = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["sessions"]
    assert [(s["records_found"], s["records_added"]) for s in sessions] == [(0, 6)]


class Interrupted(Exception):
    pass


def _stop(done: int, total: int) -> None:
    raise Interrupted


@pytest.mark.slow
def test_two_processes_finish_a_run_that_one_process_began(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    run_dir = run_directory(tmp_path, MODEL, TASK, METHOD)
    with pytest.raises(Interrupted):
        evaluate(model, tokenizer, CONFIG, run_dir, progress=False, on_batch=_stop)  # one batch, then stopped
    begun = lines(run_dir / "items.jsonl")
    assert len(begun) == 2
    launch_two(tmp_path)
    stored = lines(run_dir / "items.jsonl")
    assert stored[:2] == begun and sorted(r["index"] for r in stored) == list(range(6))
    assert read_records(run_dir / "items.jsonl").keys() == {r["index"] for r in stored}
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["n"] == 6 and results["sessions"] == 2 and results["resumes"] == 1
    sessions = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["sessions"]
    assert [(s["records_found"], s["records_added"]) for s in sessions] == [(0, 2), (2, 4)]
