"""Entry point: compose conf/, then run one compression experiment (or a sweep with -m)."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from big2small.entry import USER_ERROR_EXIT_CODE, USER_ERRORS, report, run_hydra_main

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from big2small.logs import quiet_library_logs
    from big2small.pipeline import header_lines, run

    quiet_library_logs()
    hydra_cfg = HydraConfig.get()
    config_name = hydra_cfg.runtime.choices.get("compressor")
    for line in header_lines(cfg, config_name, list(hydra_cfg.overrides.task)):
        log.info(line)
    try:
        run(cfg, HydraConfig.get().runtime.output_dir, config_name)
    except USER_ERRORS as error:
        report(error)  # one line on stderr, no traceback
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return  # one bad job must not end the sweep: it leaves no metrics.json, and the report names it
        sys.exit(USER_ERROR_EXIT_CODE)


if __name__ == "__main__":
    run_hydra_main(main)
