"""Entry point: evaluate an existing artifact without fitting anything.

    python src/evaluate.py artifact=outputs/runs/<time>/compressed.safetensors [model=... data=... task=...]
        [model.checkpoint=<base weights>] [export=rebuilt.safetensors]

The same config groups as src/train.py choose the architecture, data and task. The base model's weights
(model.checkpoint) are needed when the artifact does not store the parameters its compressor left alone, and
give the base model's metric next to the rebuilt one when given.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from big2small.entry import USER_ERROR_EXIT_CODE, USER_ERRORS, report, run_hydra_main


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from big2small.evaluation import evaluate_artifact
    from big2small.logs import quiet_library_logs

    quiet_library_logs()
    try:
        evaluate_artifact(cfg, HydraConfig.get().runtime.output_dir)
    except USER_ERRORS as error:
        report(error)
        sys.exit(USER_ERROR_EXIT_CODE)


if __name__ == "__main__":
    run_hydra_main(main)
