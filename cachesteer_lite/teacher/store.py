"""Where traces go as the teacher answers: the accepted file and its rejected sibling, appended line by line.

Accepted traces go to the output file, rejected ones to ``<stem>.rejected.jsonl`` with the reason and the raw
reply, so nothing is dropped silently. Both files are written through :mod:`runs.records`: each result is on
disk before the next request is counted, and a line torn by a crash is dropped when the store is opened again.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from ..runs.records import append_records, read_records, write_records
from ..tasks.traces import STYLES, Trace, read_traces

REJECTED_SUFFIX = ".rejected.jsonl"


@dataclass(frozen=True)
class RejectedTrace:
    """A reply that was not kept: the parsed trace (``answer`` "" when none was found), why, and the raw reply."""

    trace: Trace
    reason: str
    raw_response: str

    @property
    def key(self) -> tuple[str, str, int, str]:
        """The key of the trace, as in the accepted file."""
        return self.trace.key

    def to_dict(self) -> dict:
        """The trace's fields followed by ``reason`` and ``raw_response``."""
        return {**self.trace.to_dict(), "reason": self.reason, "raw_response": self.raw_response}

    @classmethod
    def from_dict(cls, record: object) -> RejectedTrace:
        """Parse a line of a rejected file, raising ValueError when it breaks the schema."""
        if not isinstance(record, dict):
            raise ValueError("expected a JSON object")
        fields = dict(record)
        extra = {name: fields.pop(name, None) for name in ("reason", "raw_response")}
        if not all(isinstance(value, str) for value in extra.values()):
            raise ValueError("fields 'reason' and 'raw_response' must be strings")
        return cls(Trace.from_dict(fields), extra["reason"], extra["raw_response"])


def rejected_path(out: str | Path) -> Path:
    """Where the rejected traces of output file ``out`` go: ``x.jsonl`` -> ``x.rejected.jsonl``."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + REJECTED_SUFFIX)


def read_rejected(path: str | Path) -> list[RejectedTrace]:
    """All records of a rejected-traces file, in file order (an absent file has none)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")  # only "\n" ends a JSON line (U+2028 may sit in a string)
    if lines[-1] == "":
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(RejectedTrace.from_dict(json.loads(line)))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}, line {number}: {error}") from None
    return records


def _key(record: dict) -> tuple[str, str, int, str]:
    """The key of a stored record: (task, split, index, style)."""
    return record["task"], record["split"], record["index"], record["style"]


def _style_order(record: dict) -> tuple[str, str, int, int]:
    """Sort order of a file: task, split, style (in STYLES order), then item index."""
    task, split, index, style = _key(record)
    return task, split, STYLES.index(style), index


class TraceStore:
    """The accepted file ``path`` and its rejected sibling, appended line by line under a lock.

    Opening the store drops a last line that a crash cut short (its item is requested again) and reads the keys
    (task, split, index, style) already in either file; :meth:`add` refuses a key twice, so a resumed run can
    neither lose nor duplicate an item.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rejected_path = rejected_path(self.path)
        self._lock = threading.Lock()
        for file in (self.path, self.rejected_path):
            read_records(file, key=_key, repair=True)
        accepted = read_traces(self.path) if self.path.is_file() and self.path.stat().st_size else []
        self._keys = {trace.key for trace in accepted} | {record.key for record in read_rejected(self.rejected_path)}

    def __contains__(self, key: tuple[str, str, int, str]) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, record: Trace | RejectedTrace) -> None:
        """Append ``record`` to its file, flushed and synced before returning."""
        path = self.rejected_path if isinstance(record, RejectedTrace) else self.path
        with self._lock:
            if record.key in self._keys:
                raise ValueError(f"{record.key} is already stored in {self.path} or {self.rejected_path}")
            append_records(path, [record.to_dict()])
            self._keys.add(record.key)

    def sort(self) -> None:
        """Rewrite both files in (task, split, style, index) order, so a finished file does not depend on the
        order in which concurrent replies arrived. Each file is replaced atomically."""
        with self._lock:
            for path in (self.path, self.rejected_path):
                if path.is_file():
                    write_records(path, sorted(read_records(path, key=_key).values(), key=_style_order))
