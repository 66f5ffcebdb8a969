"""Per-class subsets (the paper's protocol) and the split manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chimeramix.data import Split, make_split, open_source
from chimeramix.data.imageset import ImageSet
from chimeramix.errors import ChimeraMixError


def toy(counts=(7, 5, 9), size=4, seed=0) -> ImageSet:
    """Classes with the given counts, labels interleaved (not sorted), random pixels."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    rng.shuffle(labels)
    images = torch.from_numpy(rng.integers(0, 256, (len(labels), 3, size, size), dtype=np.uint8))
    return ImageSet(images, torch.from_numpy(labels).long(), tuple(f"class{c}" for c in range(len(counts))))


def expected_indices(labels, num_classes: int, spc: int, seed: int) -> list[int]:
    """The protocol, written out: per class in label order, one default_rng(seed), shuffle, keep the first spc."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(num_classes):
        idx = np.array([i for i, y in enumerate(labels) if y == c])
        rng.shuffle(idx)
        out += [int(i) for i in idx[:spc]]
    return out


@pytest.mark.parametrize("seed", [0, 1, 4, 1234])
@pytest.mark.parametrize("spc", [1, 3, 5])
def test_protocol(spc, seed):
    data = toy()
    s = make_split(data, "toy", spc, seed)
    assert list(s.indices) == expected_indices(data.labels.tolist(), 3, spc, seed)


def test_exactly_spc_per_class_in_label_order():
    data = toy()
    s = make_split(data, "toy", 5, 0)
    labels = data.labels[list(s.indices)].tolist()
    assert labels == [0] * 5 + [1] * 5 + [2] * 5
    assert len(set(s.indices)) == 15
    sub = s.apply(data)
    assert sub.class_counts() == [5, 5, 5] and sub.classes == data.classes
    assert torch.equal(sub.images, data.images[list(s.indices)])


def test_determinism_and_seed_dependence():
    data = toy(counts=(20, 20, 20))
    a, b = make_split(data, "toy", 5, 3), make_split(toy(counts=(20, 20, 20)), "toy", 5, 3)
    assert a == b
    assert make_split(data, "toy", 5, 4).indices != a.indices
    assert a.source == "toy" and a.spc == 5 and a.seed == 3 and a.fingerprint == data.fingerprint
    assert a.image_size == (4, 4) and a.classes == data.classes


def test_all_images_of_the_smallest_class():
    data = toy()
    s = make_split(data, "toy", 5, 0)  # class1 has exactly 5
    assert sorted(s.indices[5:10]) == [i for i, y in enumerate(data.labels.tolist()) if y == 1]


@pytest.mark.parametrize("spc", [0, -1])
def test_spc_below_one(spc):
    with pytest.raises(ChimeraMixError, match="at least 1"):
        make_split(toy(), "toy", spc, 0)


def test_spc_above_smallest_class_names_class_and_count():
    with pytest.raises(ChimeraMixError) as e:
        make_split(toy(), "toy", 6, 0)
    msg = str(e.value)
    assert "'class1'" in msg and "5 training images" in msg and "--spc 5" in msg


def test_manifest_round_trip_gives_the_same_images(make_image_folder, tmp_path):
    root = make_image_folder(classes=("a", "b", "c"), train={"a": 6, "b": 4, "c": 5}, test=1)
    train = open_source(str(root)).load("train")
    s = make_split(train, "folder", 3, 2)
    path = tmp_path / "run" / "split.json"
    s.save(path)

    on_disk = json.loads(path.read_text())
    assert on_disk["indices"] == list(s.indices) and on_disk["classes"] == ["a", "b", "c"]
    assert on_disk["fingerprint"] == train.fingerprint and on_disk["spc"] == 3 and on_disk["seed"] == 2

    loaded = Split.load(path)
    assert loaded == s
    again = open_source(str(root)).load("train")  # decoded afresh from the files
    sub, sub2 = s.apply(train), loaded.apply(again)
    assert torch.equal(sub.images, sub2.images) and torch.equal(sub.labels, sub2.labels)
    assert sub.fingerprint == sub2.fingerprint
    assert loaded.key() == {"source": "folder", "fingerprint": train.fingerprint, "spc": 3, "seed": 2,
                            "image_size": list(train.image_size)}


def test_changed_data_is_refused(tmp_path):
    data = toy()
    s = make_split(data, "toy", 2, 0)
    s.save(tmp_path / "split.json")
    images = data.images.clone()
    images[-1, 0, 0, 0] ^= 0xFF  # one pixel of one image that is not even in the subset
    changed = ImageSet(images, data.labels, data.classes)
    with pytest.raises(ChimeraMixError, match="fingerprint") as e:
        Split.load(tmp_path / "split.json").apply(changed)
    assert changed.fingerprint in str(e.value) and data.fingerprint in str(e.value)
    relabelled = ImageSet(data.images, data.labels.flip(0), data.classes)
    with pytest.raises(ChimeraMixError):
        s.apply(relabelled)
