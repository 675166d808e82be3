"""Errors a user can act on. Each carries a one-line message that says what is wrong and how to fix it."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message ('' when it has none): what a one-line report quotes of it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class ConfigError(ValueError):
    """A configuration value is invalid; raised before any training or fitting starts."""


class FittingError(RuntimeError):
    """Fitting diverged (NaN or inf); the message names the layer."""


class ArtifactError(ValueError):
    """An artifact file that cannot be trusted: truncated, altered, or from an unknown format."""


class OutputError(OSError):
    """A file or folder the run must write cannot be written (permissions, a full disk); the message names it."""
