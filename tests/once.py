"""A fixture's result made once per test run, even when pytest-xdist spreads the tests that use it over workers.

Module-scoped fixtures run once per worker (and again whenever a worker's tests of that module are interleaved
with others), so a costly one (a trained run, a batch of CLI calls) would run several times. Here the first worker
to ask makes it, under a file lock in the folder every worker of the run shares, and the others read its result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock


def once_per_run(tmp_path_factory, name: str, make: Callable[[Path], Any]) -> Any:
    """`make(folder)` -> a JSON value, called by one worker only; every caller gets that value."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, shared by its workers
    done = base / f"once-{name}.json"
    with FileLock(str(done) + ".lock"):
        if done.is_file():
            return json.loads(done.read_text())
        folder = base / f"once-{name}"
        folder.mkdir(exist_ok=True)
        value = make(folder)
        done.write_text(json.dumps(value))
        return value
