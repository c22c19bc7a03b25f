"""CPU time of the processes a stage runs on, from /proc: utime + stime, in seconds.

A group is one process (a `smits serve`, the receiver, the Kafka JVM: every thread is in its process's
figures) or a process and its children (the PostgreSQL postmaster and every backend and auxiliary process of
the bench cluster). Children that exit during a stage (a closed connection's backend) are counted through their
parent's cutime + cstime once it has reaped them, so a group's total only grows and the difference of two
readings is what the group spent in between.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, list[int]]:
    """(parent pid, [utime, stime, cutime, cstime] in ticks) of a process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return int(fields[1]), [int(value) for value in fields[11:15]]


def process(pid: int, *, children: bool = True) -> float:
    """CPU seconds of `pid` (and of the children it has reaped, unless not `children`); 0.0 once it is gone."""
    try:
        times = _stat(pid)[1]
        return sum(times if children else times[:2]) / TICKS
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def tree(parent: int) -> float:
    """CPU seconds of `parent`, of its live children and of those it has reaped (one level: Postgres)."""
    children = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, times = _stat(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
        if ppid == parent:
            children += sum(times)
    return process(parent) + children / TICKS


def postgres_pid(data_dir: str | Path) -> int | None:
    """The postmaster of the cluster in `data_dir` (first line of postmaster.pid)."""
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


class Meter:
    """Readings of named groups; `delta()` is the CPU seconds each spent since `start()`."""

    def __init__(self, groups: Mapping[str, Callable[[], float]]) -> None:
        self.groups = dict(groups)
        self.started: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        return {name: reading() for name, reading in self.groups.items()}

    def start(self) -> None:
        self.started = self.read()

    def delta(self) -> dict[str, float]:
        now = self.read()
        return {name: now[name] - self.started[name] for name in self.groups}


def per_item_ms(delta: Mapping[str, float], items: int, *, counted: Iterable[str]) -> dict[str, float]:
    """Milliseconds of CPU per item for each group, and their `total` over the `counted` groups."""
    result = {name: seconds * 1000 / items for name, seconds in delta.items()}
    result["total"] = sum(result[name] for name in counted)
    return result
