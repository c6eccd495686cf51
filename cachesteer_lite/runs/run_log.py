"""What a run directory says about its run: ``run.json`` (the settings its records were made with, and every
session that worked on it) and whether the run is already finished.

A run that is finished is left exactly as it is: asking for it again returns its stored results and rewrites
nothing, so that its ``results.json`` keeps the versions, hardware and dates of the sessions that made its records.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .records import read_json, read_records, write_json


def check_settings(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The ``run.json`` of ``run_dir`` (None if there is none), refusing one whose run has other settings."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    previous = read_json(path)
    changed = sorted(k for k in set(previous["settings"]) | set(settings)
                     if previous["settings"].get(k) != settings.get(k))
    if changed:
        raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(changed)}: "
                         f"{[previous['settings'].get(k) for k in changed]} there, "
                         f"{[settings.get(k) for k in changed]} now); use another output directory")
    return previous


def finished_results(run_dir: Path, settings: dict[str, Any], items_files: Iterable[str],
                     indices: Iterable[int]) -> dict[str, Any] | None:
    """The stored results of the run in ``run_dir`` if it has the same settings and every item in each of its
    items files, else None (a run with other settings is refused). Reads only: nothing is repaired or rewritten."""
    if not (run_dir / "results.json").is_file() or check_settings(run_dir, settings) is None:
        return None
    wanted = set(indices)
    if any(not wanted <= set(read_records(run_dir / name)) for name in items_files):
        return None
    return read_json(run_dir / "results.json")


class RunLog:
    """``run.json`` of a run directory: the settings its records were made with, and every session that worked on
    it (start, wall time, records found and added), so that a resumed run's wall time adds up.

    Opening it refuses a directory whose run has other settings (:func:`check_settings`). A run written before
    sessions were recorded counts its earlier wall time (from its results.json) as one session. With ``writes``
    False (the other processes of a parallel run) it checks the settings but leaves the file to the main process.
    """

    def __init__(self, run_dir: Path, settings: dict[str, Any], writes: bool = True) -> None:
        self.path = run_dir / "run.json"
        self.settings, self.writes = settings, writes
        previous = check_settings(run_dir, settings)
        self.sessions: list[dict[str, Any]] = []
        if previous is not None:
            self.sessions = previous.get("sessions") or self._earlier_session(run_dir / "results.json")
        self.sessions.append({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "wall_time_s": 0.0, "records_found": None, "records_added": 0})
        self.save()

    @staticmethod
    def _earlier_session(results: Path) -> list[dict[str, Any]]:
        if not results.is_file():
            return []
        return [{"started": None, "wall_time_s": read_json(results)["wall_time_s"], "records_found": None,
                 "records_added": None, "note": "before sessions were recorded"}]

    def update(self, wall_time_s: float, *, found: int | None = None, added: int = 0) -> None:
        """Record this session's wall time so far, and add the records it found on disk (once per items file) and
        the records it added."""
        current = self.sessions[-1]
        current["wall_time_s"] = round(wall_time_s, 3)
        if found is not None:
            current["records_found"] = (current["records_found"] or 0) + found
        current["records_added"] += added
        self.save()

    def save(self) -> None:
        """Write ``run.json`` (atomically: a reader sees the old file or the new one) if this log writes it."""
        if self.writes:
            write_json(self.path, {"settings": self.settings, "sessions": self.sessions})

    @property
    def wall_time_s(self) -> float:
        """The wall time of every session, added up."""
        return round(sum(session["wall_time_s"] for session in self.sessions), 3)

    @property
    def resumes(self) -> int:
        """Sessions that found records of this run already on disk."""
        return sum(bool(session["records_found"]) for session in self.sessions)


