"""The Hydra multirun callback: at the end of a sweep, its summary.csv, report and aggregate W&B run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepSummaryCallback(Callback):
    """At the end of a multirun: summary.csv, the rate-accuracy report and (logger=wandb) one aggregate W&B run.

    A failure here is logged, never raised: the jobs' own results are already on disk, and
    `python src/report.py <sweep_dir>` makes the report again.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from big2small.report import make_report
        from big2small.report.results import ReportError

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = make_report(sweep_dir)
        except ReportError as error:
            log.warning("no report: %s", error)
            return
        log.info(report.describe())
        if config.get("logger") is not None and str(config.logger.get("_target_", "")).endswith("WandbTracker"):
            from big2small.report.wandb_aggregate import log_aggregate_run

            try:
                run_dir = log_aggregate_run(report, config.logger, sweep_name=config.get("sweep", {}).get("name"))
                log.info("W&B aggregate run: %s", run_dir)
            except Exception as error:  # noqa: BLE001 - the sweep's results must survive a tracker failure
                log.warning("aggregate W&B run failed: %s: %s", type(error).__name__, error)
