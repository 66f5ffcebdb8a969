"""Batched on-device augmentation: per-sample crop with reflect padding and flip, normalisation, resizing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from chimeramix.augment import CropFlip, denormalize, normalize, resize, resize_uint8


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_crop(x: torch.Tensor, oy: int, ox: int, flip: bool, pad: int) -> torch.Tensor:
    """C x H x W: the window at (oy, ox) of the reflect-padded image, then flipped left-right; computed with F.pad."""
    c, h, w = x.shape
    padded = F.pad(x[None].double(), (pad, pad, pad, pad), mode="reflect")[0]
    out = padded[:, oy: oy + h, ox: ox + w]
    return out.flip(-1) if flip else out


def test_sample_parameters():
    p = CropFlip.sample(256, 32, gen(0), "cpu")
    assert p.pad == 4
    assert p.oy.shape == p.ox.shape == p.flip.shape == (256,)
    assert p.oy.min() >= 0 and p.oy.max() <= 8 and p.ox.min() >= 0 and p.ox.max() <= 8
    assert p.oy.unique().numel() == 9 and p.ox.unique().numel() == 9  # every offset occurs
    assert 0.3 < p.flip.float().mean() < 0.7
    q = CropFlip.sample(256, 32, gen(0), "cpu")
    assert torch.equal(p.oy, q.oy) and torch.equal(p.ox, q.ox) and torch.equal(p.flip, q.flip)  # seeded
    assert not CropFlip.sample(64, 32, gen(1), "cpu", flip=False).flip.any()
    assert CropFlip.sample(8, 96, gen(0), "cpu").pad == 12


def test_shapes_and_dtypes_kept():
    p = CropFlip.sample(5, 16, gen(1), "cpu")
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    y = p.apply(x)
    assert y.shape == x.shape and y.dtype == torch.uint8
    maps = torch.randint(0, 1000, (5, 16, 16), dtype=torch.int32)
    m = p.apply(maps)
    assert m.shape == maps.shape and m.dtype == torch.int32
    f = p.apply(x.float())
    assert f.dtype == torch.float32 and torch.equal(f, y.float())


def test_crop_and_flip_keep_the_content_per_sample():
    n, size = 48, 16
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    x = img.expand(n, -1, -1, -1).contiguous()  # the same picture n times: any difference is the augmentation
    p = CropFlip.sample(n, size, gen(2), "cpu")
    y = p.apply(x)
    for i in range(n):
        ref = reference_crop(img, int(p.oy[i]), int(p.ox[i]), bool(p.flip[i]), p.pad)
        assert torch.equal(y[i].double(), ref), i
    distinct = {tuple(v) for v in y.reshape(n, -1).tolist()}
    assert len(distinct) > n // 2  # per-sample crops and flips, not one per batch
    assert p.flip.any() and not p.flip.all()
    centre = (p.oy == p.pad) & (p.ox == p.pad) & ~p.flip
    assert all(torch.equal(y[i], img) for i in torch.nonzero(centre).flatten().tolist())


def test_different_images_in_one_batch():
    torch.manual_seed(1)
    x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    p = CropFlip.sample(10, 8, gen(3), "cpu")
    y = p.apply(x)
    for i in range(10):
        assert torch.equal(y[i].double(), reference_crop(x[i], int(p.oy[i]), int(p.ox[i]), bool(p.flip[i]), p.pad))


def test_label_maps_at_the_same_scale_follow_the_image():
    torch.manual_seed(2)
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    labels = x[:, 0].to(torch.int32)  # a label map that is the image's first channel
    p = CropFlip.sample(6, 16, gen(4), "cpu")
    m = p.apply(labels)
    assert torch.equal(m, p.apply(x)[:, 0].to(torch.int32))  # map and image crop identically
    for i in range(6):
        ref = reference_crop(labels[i][None], int(p.oy[i]), int(p.ox[i]), bool(p.flip[i]), p.pad)[0]
        assert torch.equal(m[i].double(), ref)


def test_normalize_range_and_inverse():
    x = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8)
    y = normalize(x)
    assert y.dtype == torch.float32
    assert y[0].item() == -1.0 and y[-1].item() == 1.0
    assert torch.allclose(y, x.float() / 127.5 - 1)
    assert torch.equal((denormalize(y) * 255).round().to(torch.uint8), x)
    f = torch.tensor([0.0, 255.0])
    normalize(f)
    assert f.tolist() == [0.0, 255.0]  # a float input is not modified in place
    assert denormalize(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]


def test_resize():
    torch.manual_seed(5)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    up = resize_uint8(x, 64)
    assert up.shape == (2, 3, 64, 64) and up.dtype == torch.uint8
    assert resize_uint8(x, 32) is x
    flat = torch.full((1, 3, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(resize_uint8(flat, 24), torch.full((1, 3, 24, 24), 77, dtype=torch.uint8))
    down = resize(normalize(x), 16)
    assert down.shape == (2, 3, 16, 16) and down.abs().max() <= 1
