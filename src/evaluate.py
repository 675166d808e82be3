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

from big2small.errors import ArtifactError, ConfigError, FittingError


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from big2small.logs import quiet_library_logs
    from big2small.pipeline import evaluate_artifact

    quiet_library_logs()
    try:
        evaluate_artifact(cfg, HydraConfig.get().runtime.output_dir)
    except (ArtifactError, ConfigError, FittingError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
