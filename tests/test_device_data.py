"""The subset as one tensor on the device; batches by index as a pure function of (seed, step)."""

from __future__ import annotations

import pytest
import torch

from chimeramix.data.device import DeviceData, resolve_device
from chimeramix.data.imageset import ImageSet
from chimeramix.errors import ChimeraMixError


def toy(counts=(3, 5, 4)) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    images = torch.randint(0, 256, (len(labels), 3, 4, 4), dtype=torch.uint8, generator=g)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(len(counts))))


def test_resident_tensors():
    data = toy()
    d = DeviceData(data, torch.device("cpu"), seed=0)
    assert d.n == 12 and d.images.dtype == torch.uint8 and d.images.device.type == "cpu"
    assert torch.equal(d.images, data.images) and torch.equal(d.labels, data.labels)
    assert d.segments is None and d.num_segments is None
    seg = torch.randint(0, 7, (12, 4, 4), dtype=torch.int32)
    seg[0, 0, 0] = 6
    assert DeviceData(data, torch.device("cpu"), 0, seg).num_segments == 7


def test_batch_indices_are_a_pure_function_of_seed_and_step():
    data = toy()
    a, b = DeviceData(data, torch.device("cpu"), seed=3), DeviceData(data, torch.device("cpu"), seed=3)
    steps = [0, 1, 2, 7, 100, 3, 0, 55]
    first = [a.batch_indices(s, 5) for s in steps]
    for s, x in zip(reversed(steps), reversed(first)):  # another instance, another order of calls
        assert torch.equal(b.batch_indices(s, 5), x)
    c = DeviceData(data, torch.device("cpu"), seed=4)
    assert any(not torch.equal(c.batch_indices(s, 5), x) for s, x in zip(steps, first))


def test_consecutive_steps_within_a_pass_are_a_permutation():
    d = DeviceData(toy(), torch.device("cpu"), seed=1)
    pass0 = torch.cat([d.batch_indices(s, 4) for s in range(3)])
    pass1 = torch.cat([d.batch_indices(s, 4) for s in range(3, 6)])
    assert sorted(pass0.tolist()) == list(range(12)) and sorted(pass1.tolist()) == list(range(12))
    assert not torch.equal(pass0, pass1)


def test_batches_across_pass_boundaries_follow_one_endless_sequence():
    d = DeviceData(toy(counts=(4, 6)), torch.device("cpu"), seed=2)  # n = 10, batch 4 does not divide it
    seq = torch.cat([d.batch_indices(s, 1) for s in range(40)])
    for step in range(10):
        x = d.batch_indices(step, 4)
        assert x.shape == (4,) and torch.equal(x, seq[4 * step: 4 * step + 4])
    assert torch.equal(d.batch_indices(0, 25), seq[:25])  # a batch larger than the data spans three passes
    for k in range(4):
        assert sorted(seq[10 * k: 10 * k + 10].tolist()) == list(range(10))


def test_partners_are_of_the_same_class_and_cover_it():
    data = toy()
    d = DeviceData(data, torch.device("cpu"), seed=0)
    g = torch.Generator().manual_seed(5)
    idx = torch.arange(12).repeat(100)
    seen = {i: set() for i in range(12)}
    for _ in range(3):
        p = d.partners(idx, g)
        assert torch.equal(data.labels[p], data.labels[idx])
        for i, j in zip(idx.tolist(), p.tolist()):
            seen[i].add(j)
    for i in range(12):
        same_class = {j for j in range(12) if data.labels[j] == data.labels[i]}
        assert seen[i] == same_class  # with replacement, itself included
    again = d.partners(idx, torch.Generator().manual_seed(5))
    assert torch.equal(again, d.partners(idx, torch.Generator().manual_seed(5)))


def test_partners_in_a_class_of_one():
    data = toy(counts=(1, 3))
    d = DeviceData(data, torch.device("cpu"), seed=0)
    lone = int(torch.nonzero(data.labels == 0)[0])
    p = d.partners(torch.full((50,), lone), torch.Generator().manual_seed(0))
    assert p.tolist() == [lone] * 50


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ChimeraMixError, match="unknown --device"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ChimeraMixError, match="no CUDA"):
            resolve_device("cuda")
