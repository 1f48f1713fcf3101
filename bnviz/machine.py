"""What this process may use of the machine: shared by the run pool's pace, the map's workers and the
reproductions' workers, so that a server or a job held to some cores (``taskset``, a container's
CPU affinity) sizes itself by those cores, not by the machine's."""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on (its CPU affinity; on systems without one, the machine's)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
