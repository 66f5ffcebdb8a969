"""Embedded datasets that ship inside a dependency: scikit-learn's digits and scikit-image's lfw_subset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from chimeramix.data import known_names, open_source
from chimeramix.data.embedded import DIGITS_TRAIN, load_digits, load_lfw_faces
from chimeramix.data.imageset import ImageSet


def test_digits_shapes_split_and_classes():
    from sklearn.datasets import load_digits as sk_digits

    target = sk_digits().target
    train, test = load_digits("train"), load_digits("test")
    assert train.images.shape == (1000, 3, 32, 32) and test.images.shape == (797, 3, 32, 32)
    assert train.images.dtype == test.images.dtype == torch.uint8
    assert train.classes == test.classes == tuple(str(i) for i in range(10))
    assert DIGITS_TRAIN == 1000
    assert train.labels.tolist() == target[:1000].tolist() and test.labels.tolist() == target[1000:].tolist()
    assert min(train.class_counts()) >= 90 and min(test.class_counts()) >= 70
    assert torch.equal(train.images[:, 0], train.images[:, 1]) and torch.equal(train.images[:, 1], train.images[:, 2])
    assert train.images.min() == 0 and train.images.max() == 255


def test_digits_pixels_are_the_upscaled_digits():
    """Each 32x32 image, pooled back to 8x8, is the sklearn digit (0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits as sk_digits

    small = torch.from_numpy(sk_digits().images[:1000]).float() * 255 / 16
    pooled = F.avg_pool2d(load_digits("train").images[:, :1].float(), 4)[:, 0]
    corr = np.corrcoef(pooled.flatten().numpy(), small.flatten().numpy())[0, 1]
    assert corr > 0.97


def test_digits_fingerprint_is_deterministic():
    a, b = load_digits("train"), load_digits("train")
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert a.fingerprint != load_digits("test").fingerprint
    src = open_source("digits")
    assert src.kind == "embedded" and src.load("train").fingerprint == a.fingerprint
    changed = a.images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert ImageSet(changed, a.labels, a.classes).fingerprint != a.fingerprint
    assert ImageSet(a.images, a.labels, tuple(reversed(a.classes))).fingerprint != a.fingerprint


def test_digits_resized_through_the_source():
    data = open_source("Digits", image_size=16).load("test")  # names are case-insensitive
    assert data.images.shape == (797, 3, 16, 16) and data.images.dtype == torch.uint8


def test_lfw_faces():
    train, test = load_lfw_faces("train"), load_lfw_faces("test")
    assert train.images.shape == (140, 3, 32, 32) and test.images.shape == (60, 3, 32, 32)
    assert train.classes == ("face", "non-face")
    assert train.class_counts() == [70, 70] and test.class_counts() == [30, 30]
    assert train.fingerprint == load_lfw_faces("train").fingerprint
    # no image is in both splits
    tr = {bytes(x.numpy().tobytes()) for x in train.images}
    assert not any(bytes(x.numpy().tobytes()) in tr for x in test.images)


def test_known_names():
    names = known_names()
    assert {"cifair10", "cifair100", "cifar10", "cifar100", "stl10", "digits", "lfw-faces"} <= set(names)
