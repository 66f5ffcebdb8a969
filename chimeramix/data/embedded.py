"""Datasets that ship inside a dependency, so a demo needs no download.

`digits` (the default of `make demo`) is scikit-learn's 1,797 handwritten
digits: ten classes with about 180 images each, enough for a real few-shot
task at 5-50 images per class with a held-out test set. scikit-image's
`lfw_subset` (200 faces/non-faces, two classes) is offered as `lfw-faces`;
with two classes and 100 images each it makes a thin test set, hence not the
default.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .imageset import ImageSet, from_numpy_hwc

DIGITS_TRAIN = 1000  # the first 1,000 digits train, the remaining 797 test (fixed, documented split)
FACES_TRAIN_PER_CLASS = 70


def _upscale(images: np.ndarray, size: int) -> np.ndarray:
    """N x h x w floats in [0, 1] -> N x size x size uint8 (bilinear)."""
    t = torch.from_numpy(images.astype(np.float32))[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return (t[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def load_digits(split: str) -> ImageSet:
    """8x8 digits (17 grey levels) presented at 32x32 RGB so the CIFAR-sized models apply unchanged."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    images = _upscale(bunch.images / 16.0, 32)
    labels = bunch.target
    part = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    return from_numpy_hwc(images[part], labels[part], [str(i) for i in range(10)])


def load_lfw_faces(split: str) -> ImageSet:
    """skimage's lfw_subset: 100 faces then 100 non-faces, 25x25 grey, presented at 32x32 RGB."""
    from skimage.data import lfw_subset

    images = _upscale(lfw_subset(), 32)
    labels = np.repeat([0, 1], 100)
    keep = np.concatenate([np.arange(c * 100, c * 100 + FACES_TRAIN_PER_CLASS) for c in (0, 1)])
    if split != "train":
        keep = np.setdiff1d(np.arange(200), keep)
    return from_numpy_hwc(images[keep], labels[keep], ["face", "non-face"])


EMBEDDED = {
    "digits": (load_digits, "scikit-learn's 1,797 handwritten digits, 10 classes, 8x8 shown at 32x32 (1,000 train / 797 test)"),
    "lfw-faces": (load_lfw_faces, "scikit-image's lfw_subset, face vs non-face, 25x25 shown at 32x32 (140 train / 60 test)"),
}
