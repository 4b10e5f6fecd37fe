"""Process checks for tests of solver children: has a process stopped running?"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["process_gone"]


def process_gone(pid: int, within: float = 10.0) -> bool:
    """True once process ``pid`` is not running: absent, or a zombie (dead, waiting to be reaped).

    Polls ``/proc/<pid>/stat`` for up to ``within`` seconds (Linux).  A killed
    solver child is a zombie until its parent reaps it, which smug does without
    making the caller wait, so ``os.kill(pid, 0)`` can still succeed for a moment
    after a child has died; this check does not mistake that for running.
    """
    end = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)
