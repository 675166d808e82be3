"""What the command-line entry points share: every user error is one line on stderr and exit code 2.

That includes Hydra's own errors (an unknown option, an override of a key that does not exist, a malformed
override): Hydra is told to raise them (HYDRA_FULL_ERROR) instead of printing its multi-line report, and they are
folded into one line here. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Callable

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from big2small.config_store import register_compressor_defaults
from big2small.errors import ArtifactError, ConfigError, FittingError, OutputError
from big2small.process_memory import keep_freed_memory

USER_ERRORS = (ArtifactError, ConfigError, FittingError, OutputError)
USER_ERROR_EXIT_CODE = 2


def one_line(error: BaseException) -> str:
    """The error's message with its lines (Hydra lists options one per line) joined into one, without Hydra's
    config search path and with its override advice made accurate."""
    text = str(error).split("Config search path:")[0]
    unknown_key = re.match(r"Could not override '([^']+)'", text)
    if unknown_key:
        return (f"{unknown_key.group(1)} is not a key of this config (check the spelling; adding --cfg job "
                "to the command lists every key)")
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(parts) if parts else type(error).__name__


def report(error: BaseException) -> None:
    kind = type(error).__name__ if isinstance(error, USER_ERRORS) else "ConfigError"
    print(f"{kind}: {one_line(error)}", file=sys.stderr, flush=True)


def run_hydra_main(main: Callable[[], None]) -> None:
    """Call a @hydra.main function; a user error anywhere ends the process with one line and exit code 2.
    The compressors' defaults are registered with Hydra first, since the run config takes them from there; the
    process keeps freed memory for reuse (process_memory.py), and the objects the imports made are moved out of the
    cyclic collector's way (gc.freeze), so that the full collections between a fit's phases take milliseconds
    rather than a fifth of a second."""
    os.environ["HYDRA_FULL_ERROR"] = "1"
    keep_freed_memory()
    try:
        register_compressor_defaults()
        gc.freeze()  # the libraries' objects, loaded by now, live as long as the process: collections skip them
        main()
    except (*USER_ERRORS, HydraException, OmegaConfBaseException) as error:
        report(error)
        sys.exit(USER_ERROR_EXIT_CODE)
    except OSError as error:  # Hydra creating a run dir it cannot write, before our code runs
        report(OutputError(f"cannot write {error.filename or ''}: {error.strerror or error}"))
        sys.exit(USER_ERROR_EXIT_CODE)
