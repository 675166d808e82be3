"""Entry point: compose conf/, then run one compression experiment (or a sweep with -m)."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from big2small.errors import ArtifactError, ConfigError, FittingError

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from big2small.logs import quiet_library_logs
    from big2small.pipeline import header_lines, run

    quiet_library_logs()
    hydra_cfg = HydraConfig.get()
    for line in header_lines(cfg, hydra_cfg.runtime.choices.get("compressor"), list(hydra_cfg.overrides.task)):
        log.info(line)
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except (ArtifactError, ConfigError, FittingError) as error:
        # A user error: one line on stderr, no traceback, non-zero exit.
        print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return  # one bad job must not end the sweep: it leaves no metrics.json, and the report names it
        sys.exit(2)


if __name__ == "__main__":
    main()
