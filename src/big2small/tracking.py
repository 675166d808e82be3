"""Where a run's results go: metrics.json always, plus one experiment tracker (W&B, CSV or none)."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from big2small.errors import ConfigError, first_line
from big2small.files import write_atomically

METRICS_FILE = "metrics.json"
log = logging.getLogger(__name__)
ARTIFACT_TYPE = "compressed-model"  # the W&B artifact type of compressed.safetensors
WANDB_DEFAULT_URL = "https://api.wandb.ai"
CONNECT_TIMEOUT_S = 5.0  # a reachable W&B host accepts a connection well within this


def write_metrics_json(run_dir: Path, metrics: dict[str, Any]) -> Path:
    path = Path(run_dir) / METRICS_FILE  # whole or absent: a sweep that re-reads it never sees half a file
    write_atomically(path, (json.dumps(_json_safe(metrics), indent=2, sort_keys=False) + "\n").encode(), "metrics")
    return path


def scalar_items(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalars of metrics.json (numbers, strings, booleans), i.e. what goes into a tracker's summary."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


class Tracker:
    """No tracking beyond metrics.json (`logger=none`)."""

    logs_artifacts = False  # True: log_artifact attaches compressed.safetensors to the tracker's run

    def start(self, config: dict, run_dir: Path, run_name: str, job_type: str | None = None,
              tags: list[str] | tuple[str, ...] = ()) -> None:
        """Open the job's run; `job_type` and `tags` label it (the pipeline passes compressor, task, data, model)."""
        self.run_dir = Path(run_dir)

    def lightning_logger(self, prefix: str):
        """A Lightning logger for training curves, or False."""
        return False

    def log_summary(self, metrics: dict[str, Any]) -> None:
        pass

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        pass

    def log_artifact(self, path: Path, name: str, metadata: dict[str, Any]) -> None:
        """Attach the compressed artifact to the run (trackers that keep files elsewhere than the run dir)."""

    def finish(self) -> None:
        pass


class CsvTracker(Tracker):
    """Writes summary.csv-style files into the run dir (`logger=csv`): scalars.csv and one CSV per table."""

    def lightning_logger(self, prefix: str):
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(self.run_dir), name="curves", version=prefix)

    def log_summary(self, metrics):
        _write_csv(self.run_dir / "scalars.csv", [scalar_items(metrics)])

    def log_table(self, name, rows):
        if rows:
            _write_csv(self.run_dir / f"{name}.csv", rows)


class WandbTracker(Tracker):
    """One W&B run per job. Offline unless the user set WANDB_MODE; `wandb sync` uploads it later."""

    logs_artifacts = True

    def __init__(self, project: str = "big2small", entity: str | None = None, mode: str = "offline",
                 group: str | None = None, job_type: str | None = None, tags: list[str] | None = None) -> None:
        if mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"logger.mode must be offline, online or disabled (got {mode!r})")
        self.project, self.entity, self.mode = project, entity, mode
        self.group, self.job_type, self.tags = group, job_type, list(tags or [])
        self.run = None

    def start(self, config, run_dir, run_name, job_type=None, tags=()):
        super().start(config, run_dir, run_name)
        all_tags = list(dict.fromkeys([*self.tags, *tags]))  # configured tags first, no duplicates
        self.run = self.open_run(group=self.group, job_type=self.job_type or job_type, tags=all_tags,
                                 name=run_name, config=config, run_dir=self.run_dir)

    def open_run(self, *, group, job_type, tags, name, config, run_dir: Path):
        """A W&B run with this tracker's project, entity and mode (WANDB_MODE wins); every run starts here."""
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")  # our own line at finish() says where the run is
        mode = os.environ.get("WANDB_MODE", self.mode)
        if mode == "online" and not _has_wandb_credentials():
            raise ConfigError("W&B online needs a login: run `wandb login` or set WANDB_API_KEY; or log offline "
                              "(logger.mode=offline) and `wandb sync` the run dir later")
        unreachable = _unreachable_wandb_host() if mode == "online" else None
        if unreachable:
            raise ConfigError(f"W&B online cannot reach {unreachable}; log offline (logger.mode=offline) and "
                              "`wandb sync` the run dir later")
        try:
            return wandb.init(
                project=self.project, entity=self.entity, mode=mode, group=group, job_type=job_type, tags=tags,
                name=name, config=config, dir=str(run_dir), reinit="finish_previous",
            )
        except Exception as error:  # noqa: BLE001 - W&B raises many types for network and auth failures
            reason = first_line(error) or type(error).__name__
            raise ConfigError(f"W&B could not start {'an' if mode == 'online' else 'a'} {mode} run ({reason}); log offline (logger.mode=offline) "
                              "and `wandb sync` the run dir later") from None

    def lightning_logger(self, prefix):
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(experiment=self.run, prefix=prefix)

    def log_summary(self, metrics):
        for key, value in scalar_items(metrics).items():
            self.run.summary[key] = value

    def log_table(self, name, rows):
        import wandb

        if rows:
            columns = list(rows[0])
            self.run.log({name: wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])})

    def log_artifact(self, path, name, metadata):
        import wandb

        artifact = wandb.Artifact(name, type=ARTIFACT_TYPE, metadata=_json_safe(metadata))
        artifact.add_file(str(path), name=Path(path).name)
        self.run.log_artifact(artifact)

    def finish(self):
        if self.run is not None:
            offline = self.run.settings.mode == "offline"
            run_dir = self.run.dir
            self.run.finish()
            self.run = None
            if offline:
                log.info("W&B offline run: %s  (upload: wandb sync <that dir>)", Path(run_dir).parent)


def _unreachable_wandb_host() -> str | None:
    """The W&B host and why no connection to it opens within CONNECT_TIMEOUT_S, or None when it opens (or when
    a proxy is configured, since then only the proxy is reached directly). Without this check a machine without
    network waits out W&B's own retries (about 90 s) before failing."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return None
    url = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_URL))
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        return f"{host}:{port} ({error.strerror or type(error).__name__})"
    return None


def _has_wandb_credentials() -> bool:
    """An API key in the environment, or a `wandb login` entry in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    host = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_URL)).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value

