"""Entry point: compose conf/, then run one compression experiment (or a sweep with -m)."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from big2small.errors import ConfigError, FittingError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from big2small.logs import quiet_library_logs
    from big2small.pipeline import run

    quiet_library_logs()
    print(OmegaConf.to_yaml(cfg, resolve=True), flush=True)
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, FittingError) as error:
        # A user error: one line, no traceback, non-zero exit.
        logging.getLogger("big2small").error("%s: %s", type(error).__name__, error)
        sys.exit(2)


if __name__ == "__main__":
    main()
