"""Writing the files a run leaves behind: whole or not at all, with errors that name the file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from safetensors.torch import save as safetensors_save
from torch import nn

from big2small.errors import OutputError


def write_atomically(path: str | Path, data: bytes, what: str) -> Path:
    """Write `data` to `path` through a temporary name and a rename, so a reader never sees half a file; a
    failure (permissions, a full disk) removes the temporary file and raises OutputError naming `what`. The
    temporary name holds the process id: parallel sweep jobs may write the same file (a cached base model)."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as error:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass  # not a file we made (a folder in its place): leave it
        raise OutputError(f"cannot write {what} {path}: {error.strerror or error}") from None
    return path


def writable_dir(path: Path, what: str) -> Path:
    """`path`, created if needed and proven writable, or an OutputError naming it. The probe file has a name of its
    own: parallel sweep jobs probe the same cache dir at once, and one must not remove another's probe."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"cannot write the {what} {path}: {error.strerror or error}") from None
    return path


def write_state_dict(model: nn.Module, path: str | Path) -> Path:
    """The rebuilt model's whole state_dict as plain safetensors (loadable with torch + safetensors alone)."""
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    return write_atomically(path, safetensors_save(state), "the export")
