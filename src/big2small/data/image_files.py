"""Reading image files from users' folders, with one-line errors that name the file at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from big2small.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: Path) -> dict[str, Path]:
    """{file stem: path} of the image files directly in `folder` (sorted by stem)."""
    if not folder.is_dir():
        raise ConfigError(f"data: folder not found: {folder}")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    return {path.stem: path for path in files}


def read_image(path: Path, mode: str) -> np.ndarray:
    """Decode `path` in PIL `mode` ("L" grey, "RGB", or None to keep the file's mode) as a uint8 array."""
    try:
        with Image.open(path) as image:
            image.load()
            if mode is not None:
                image = image.convert(mode)
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ConfigError(f"data: cannot read image {path}: {error}") from None
