"""How busy the machine was while a row was measured: other programs' CPU use skews every timing.

Two figures per row, kept in the JSON (``load``):

* the load average (1, 5 and 15 minutes) and CPU count, before and after the row: what ``uptime`` says. It
  includes densebench's own earlier rows (a 1-minute average decays slowly), so it is recorded, not judged;
* ``other_cpu_cores``: the CPU time all programs except the measuring process spent during the timed loop, in
  cores (``/proc/stat`` busy time minus the process's own, over the wall time), Linux only. This is what the
  busy warning uses: the measuring process's own threads are not counted against it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: other programs using at least this many cores (or this share of all cores, whichever is more) while a row was
#: timed make the machine "busy" for the report
BUSY_CORES, BUSY_SHARE = 0.5, 0.10


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # not on every platform
        return None


def _system_busy_s() -> float | None:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``), or None where there is none."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    """Other programs' CPU use over a stretch of time, measured from inside the measuring process."""

    wall: float
    system_busy: float | None
    own: float

    @classmethod
    def start(cls) -> Window:
        return cls(time.monotonic(), _system_busy_s(), time.process_time())

    def other_cores(self) -> float | None:
        """Average cores used by everything but this process since :meth:`start`, or None off Linux."""
        busy = _system_busy_s()
        wall = time.monotonic() - self.wall
        if busy is None or self.system_busy is None or wall <= 0:
            return None
        own = time.process_time() - self.own
        # clock ticks are coarse (10 ms): a short window can come out slightly negative
        return max(0.0, (busy - self.system_busy - own) / wall)


def busy_threshold(cpu_count: int | None) -> float:
    return max(BUSY_CORES, BUSY_SHARE * (cpu_count or 1))


def is_busy(load: dict | None) -> bool:
    """Whether a row's ``load`` record says other programs were using the machine while it was timed."""
    if not isinstance(load, dict):
        return False
    other = load.get("other_cpu_cores")
    if isinstance(other, (int, float)):
        return other >= busy_threshold(load.get("cpu_count"))
    return False
