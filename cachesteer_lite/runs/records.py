"""JSON Lines records on disk, written so that a run killed at any moment loses at most what was in flight.

Every writer of the package goes through this module: the evaluation runner's items files, the trace generator's
accepted and rejected files, results and settings files.

* :func:`append_records` appends a batch of records in one write, flushed and synced to disk before it returns;
  :func:`append_new_records` does so under a file lock, leaving out keys already stored (several processes
  writing one file, :mod:`parallel`).
* :func:`read_records` reads them back by key. A kill in the middle of a write leaves a last line cut short: it is
  dropped (its item is simply done again). A repeated key keeps its first record. With ``repair`` the file is
  rewritten without what was dropped, which a writer must ask for before it appends again (appending after a
  cut-off line would glue two records into one line and damage the file for good).
* :func:`write_records`, :func:`write_atomic` and :func:`write_json` replace a whole file in one step (write a
  temporary file, then rename it), so a reader never sees half of it. JSON is strict: NaN and infinities are
  refused, since strict parsers reject them.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

Key = Callable[[dict], Hashable]


def json_line(record: dict) -> str:
    """One record as a JSON line (strict JSON, UTF-8 text kept readable, newline-terminated)."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def append_records(path: Path, records: Iterable[dict]) -> None:
    """Append records in one write, flushed and synced before returning (the folder is created if needed)."""
    text = "".join(json_line(record) for record in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def by_index(record: dict) -> Hashable:
    """The key of an evaluation record: its item index."""
    return record["index"]


def append_new_records(path: Path, records: Iterable[dict], key: Key = by_index) -> list[dict]:
    """Append the records whose key (default: the item index) ``path`` does not hold yet, and return them.

    For several processes writing one file: an exclusive lock (``fcntl.flock``) is held from reading what is
    stored to the synced end of the write, so lines of two writers never interleave and no key is written
    twice.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        stored = read_records(path, key)
        new = [record for record in records if key(record) not in stored]
        handle.write("".join(json_line(record) for record in new))
        handle.flush()
        os.fsync(handle.fileno())
    return new


def read_records(path: Path, key: Key = by_index, repair: bool = False) -> dict[Any, dict]:
    """The records of a JSON Lines file by ``key`` (default: the item index), in file order; none when the file
    does not exist.

    A last line that is not valid JSON was cut off by an interruption and is dropped; an invalid line before the
    last one means the file is damaged (ValueError naming the line). A repeated key keeps its first record.
    Reading never changes the file unless ``repair`` is set: then whatever was dropped is rewritten away
    (atomically, with a warning), and every record ends in a newline.
    """
    if not path.is_file():
        return {}
    lines = path.read_bytes().splitlines(keepends=True)  # bytes: a write cut inside a UTF-8 character is torn too
    records: dict[Any, dict] = {}
    clean = True
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if number == len(lines):
                clean = False
                if repair:
                    warnings.warn(f"{path}: dropping an incomplete last line ({len(line)} characters) left by an "
                                  "interrupted run; its item will be done again", stacklevel=2)
                break
            raise ValueError(f"{path}, line {number}: not valid JSON; the file is damaged") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object; the file is damaged")
        if key(record) in records or not line.endswith(b"\n"):
            clean = False
        records.setdefault(key(record), record)
    if not clean and repair:
        write_records(path, records.values())
    return records


def write_records(path: Path, records: Iterable[dict]) -> None:
    """Replace a JSON Lines file with ``records``, atomically."""
    write_atomic(path, "".join(json_line(record) for record in records))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old file or the new one, never a mix. The
    staging file is the process's own, so processes of a parallel run may write the same file (the last wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, strict JSON (no NaN or infinity), atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """The parsed JSON file ``path``."""
    return json.loads(path.read_text(encoding="utf-8"))
