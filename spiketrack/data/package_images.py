"""Still photos shipped inside installed packages (scikit-image, scikit-learn): training, calibration and
demo data that needs no download."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

SKLEARN_SAMPLES = "sklearn_samples"  # pseudo-name: scikit-learn's sample photos (china, flower)
STEREO_MOTORCYCLE = "stereo_motorcycle"  # pseudo-name: both views of skimage.data.stereo_motorcycle()


def package_images(names: Sequence[str], max_side: int | None = None) -> dict[str, np.ndarray]:
    """RGB uint8 images by `skimage.data` name (plus the two pseudo-names above), in the given order,
    longest side at most `max_side`. An image that does not load is left out with a warning."""
    import skimage.data

    images: dict[str, np.ndarray] = {}
    for name in names:
        try:
            if name == SKLEARN_SAMPLES:
                from sklearn.datasets import load_sample_images

                sample = load_sample_images()
                images.update((Path(f).stem, im) for f, im in zip(sample.filenames, sample.images))
            elif name == STEREO_MOTORCYCLE:
                left, right, _ = skimage.data.stereo_motorcycle()
                images.update(motorcycle_left=left, motorcycle_right=right)
            else:
                images[name] = getattr(skimage.data, name)()
        except Exception as exc:  # noqa: BLE001 - any failure (missing file, fetch attempt) only drops one image
            warnings.warn(f"packaged image {name} not available: {exc}", stacklevel=2)
    return {name: as_rgb(image, max_side) for name, image in images.items()}


def as_rgb(image: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """RGB uint8 copy of a gray/RGB/RGBA image, downscaled so its longest side is at most `max_side`."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.max() <= 1 else image.astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    scale = 1.0 if max_side is None else max_side / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image
