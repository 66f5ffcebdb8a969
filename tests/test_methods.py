"""The comparison methods: registry, option checks, the arithmetic of each method, one real training step each."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from chimeramix.augment import CropFlip, normalize
from chimeramix.config import ClassifierConfig, make_config, resolve_classifier
from chimeramix.data.device import DeviceData
from chimeramix.data.imageset import ImageSet
from chimeramix.errors import ChimeraMixError
from chimeramix.methods import METHODS, Chain, Method, StepContext, build_method, known_methods
from chimeramix.methods.common import box_masks, centred_boxes, sample_beta, sample_gamma
from chimeramix.methods.erasing import cutout_size
from chimeramix.methods.mixing import ZETA_GAMMA_MIN, pairing_on, zeta_weights
from chimeramix.train.classifier import ClassifierTrainer, _segments_at_native

ALL = ["none", "cutout", "random-erasing", "mixup", "cutmix", "cosine", "autoaugment", "trivialaugment", "gridmix",
       "segmix", "samplepairing", "zeta-mixup"]


def ctx_for(rng, n_classes=3, step=0, total=100, data=None, idx=None, crop=None, dataset="", spe=10):
    return StepContext(step, total, n_classes, rng, idx, crop, data, None, steps_per_epoch=spe, dataset=dataset)


def class_colours(k=3, seed=0):
    """K linearly independent RGB colours in [-0.9, 0.9]: a pixel's value then reveals its class mixture."""
    g = torch.Generator().manual_seed(seed)
    while True:
        v = torch.rand(k, 3, generator=g) * 1.8 - 0.9
        if k != 3 or abs(torch.linalg.det(v)) > 0.05:
            return v


def colour_batch(y, colours, size=16):
    return colours[y][:, :, None, None].expand(len(y), 3, size, size).clone()


# ---------------------------------------------------------------- registry and options


def test_every_method_and_both_combinations_are_known():
    names = known_methods()
    for m in ALL + ["chimeramix", "chimeramix+autoaugment", "chimeramix+trivialaugment"]:
        assert m in names
    for name, cls in METHODS.items():
        assert cls.name == name and cls.label and cls.paper
        assert not cls.needs_generator or name == "chimeramix"
        build_method(name)  # the published defaults are valid


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ChimeraMixError) as e:
        build_method("nope")
    msg = str(e.value)
    assert "unknown method 'nope'" in msg
    for m in ("mixup", "zeta-mixup", "segmix", "chimeramix+trivialaugment"):
        assert m in msg
    assert "\n" not in msg


@pytest.mark.parametrize("name, opts, words", [
    ("mixup", {"alpha": 0}, ["alpha must be > 0"]),
    ("cutmix", {"alpha": -1.0}, ["alpha must be > 0"]),
    ("zeta-mixup", {"gamma": 1.5}, ["1.72865", "dominates"]),
    ("zeta-mixup", {"n": 0}, ["n must be >= 1"]),
    ("cutmix", {"p": 1.5}, ["p must be a probability in [0, 1]"]),
    ("random-erasing", {"p": -0.1}, ["probability in [0, 1]"]),
    ("samplepairing", {"pairing_p": 2}, ["pairing_p must be a probability"]),
    ("gridmix", {"p_generated": 1.2}, ["probability"]),
    ("random-erasing", {"sl": 0.5, "sh": 0.1}, ["sl <= sh"]),
    ("random-erasing", {"r1": 2.0}, ["r1 must be in (0, 1]"]),
    ("cutout", {"size": 0}, ["size must be >= 1"]),
    ("autoaugment", {"policy": "mnist"}, ["unknown policy", "cifar10", "imagenet"]),
    ("mixup", {"alpha": "big"}, ["alpha must be a number"]),
])
def test_bad_options_raise_one_line(name, opts, words):
    with pytest.raises(ChimeraMixError) as e:
        build_method(name, opts)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg


def test_options_of_other_methods_are_ignored_and_own_ones_kept():
    m = build_method("mixup", {"alpha": 0.4, "seed": 3, "p_generated": 0.5})
    assert m.options == {"alpha": 0.4}
    assert build_method("zeta-mixup", {"gamma": ZETA_GAMMA_MIN}).gamma == ZETA_GAMMA_MIN


# ---------------------------------------------------------------- Beta draws from ctx.rng


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (0.4, 0.4), (2.0, 5.0)])
def test_beta_draws_have_the_right_moments(a, b):
    g = torch.Generator().manual_seed(0)
    x = sample_beta((40000,), a, b, g, "cpu")
    assert ((x >= 0) & (x <= 1)).all()
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(x.mean().item() - mean) < 0.01
    assert abs(x.var().item() - var) < 0.01
    gm = sample_gamma((40000,), a, g, "cpu")
    assert abs(gm.mean().item() - a) < 0.05 * max(a, 1)


# ---------------------------------------------------------------- MixUp, CutMix, zeta-mixup


@pytest.mark.parametrize("name", ["mixup", "zeta-mixup"])
def test_linear_mixes_have_weights_that_sum_to_one_and_labels_that_match_the_pixels(name):
    colours = class_colours()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    x = colour_batch(y, colours)
    method = build_method(name)
    changed = 0
    for seed in range(5):
        out, t = method.apply(x, y, ctx_for(torch.Generator().manual_seed(seed)))
        assert t.shape == (8, 3) and t.dtype == torch.float32
        assert torch.allclose(t.sum(1), torch.ones(8), atol=1e-5)
        assert (t >= 0).all()
        # each image is still one colour, and that colour is the label-weighted mix of the class colours
        expect = t @ colours
        assert torch.allclose(out, expect[:, :, None, None].expand_as(out), atol=1e-5)
        changed += int((t.max(1).values < 0.999).any())
    assert changed >= 4  # not the identity


def test_zeta_weights_are_a_permuted_p_series():
    g = torch.Generator().manual_seed(1)
    w = zeta_weights(10, 10, 2.8, g, "cpu")
    series = torch.arange(1, 11, dtype=torch.float32).pow(-2.8)
    series /= series.sum()
    assert torch.allclose(w.sum(1), torch.ones(10), atol=1e-6)
    assert torch.allclose(w.sort(1, descending=True).values, series.expand(10, 10), atol=1e-7)
    assert (w.max(1).values > 0.5).all()  # gamma >= 1.72865: one sample dominates each mixture
    assert len(set(w.argmax(1).tolist())) > 1  # a permutation per output sample
    w3 = zeta_weights(10, 3, 2.8, g, "cpu")
    assert ((w3 > 0).sum(1) == 3).all() and torch.allclose(w3.sum(1), torch.ones(10), atol=1e-6)


def test_cutmix_label_weight_is_the_pasted_area():
    colours = class_colours(seed=2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1, 0])
    x = colour_batch(y, colours, size=20)
    method = build_method("cutmix", {"p": 1.0})
    pasted = 0
    for seed in range(6):
        out, t = method.apply(x, y, ctx_for(torch.Generator().manual_seed(seed)))
        assert torch.allclose(t.sum(1), torch.ones(8), atol=1e-5)
        # every pixel is some class colour, and the mean colour equals the label-weighted colour
        d = (out[:, None] - colours[None, :, :, None, None]).abs().amax(2)  # n x k x h x w
        assert (d.min(1).values < 1e-6).all()
        assert torch.allclose(out.mean((2, 3)), t @ colours, atol=1e-5)
        pasted += int((t.max(1).values < 0.999).any())
    assert pasted >= 3
    # p = 0: the batch is left alone, labels one-hot
    out, t = build_method("cutmix", {"p": 0.0}).apply(x, y, ctx_for(torch.Generator().manual_seed(0)))
    assert torch.equal(out, x) and torch.equal(t.argmax(1), y) and (t.max(1).values == 1).all()


# ---------------------------------------------------------------- Cutout and Random Erasing


def test_cutout_boxes_are_clipped_at_the_borders():
    h = w = 32
    cy = torch.tensor([16, 0, 31, 0, 5])
    cx = torch.tensor([16, 0, 31, 31, 20])
    m = box_masks(*centred_boxes(cy, cx, 16, 16, h, w), h, w)
    areas = m.flatten(1).sum(1).tolist()
    assert areas == [256, 64, 9 * 9, 8 * 9, 13 * 16]  # centre, top-left corner, bottom-right, top-right, top edge


def test_cutout_removes_exactly_the_stated_area():
    x = torch.full((64, 3, 32, 32), 0.5)
    y = torch.zeros(64, dtype=torch.long)
    out, t = build_method("cutout").apply(x, y, ctx_for(torch.Generator().manual_seed(0), dataset="cifair10"))
    assert t is y
    zero = out[:, 0] == 0
    assert torch.equal(zero, (out == 0).all(1))  # all channels together
    assert ((out == 0) | (out == 0.5)).all()
    full = 0
    for z in zero:
        rows, cols = z.any(1).nonzero()[:, 0], z.any(0).nonzero()[:, 0]
        hh, ww = len(rows), len(cols)
        assert int(z.sum()) == hh * ww  # one rectangle
        assert 8 <= hh <= 16 and 8 <= ww <= 16
        if 0 < rows.min() and rows.max() < 31:
            assert hh == 16
        if 0 < cols.min() and cols.max() < 31:
            assert ww == 16
        full += int(hh * ww == 256)
    assert full >= 5


def test_cutout_size_per_dataset():
    assert cutout_size("cifair10", 32) == 16 and cutout_size("cifar10", 32) == 16
    assert cutout_size("cifair100", 32) == 8 and cutout_size("stl10", 96) == 24
    assert cutout_size("../shared/data/cifar10", 32) == 16  # a folder named like a known dataset
    assert cutout_size("digits", 28) == 14 and cutout_size("/data/flowers", 64) == 32
    assert cutout_size("cifar10", 64) == 32  # resized data: the published size scaled along
    x = torch.full((4, 3, 32, 32), 0.5)
    out, _ = build_method("cutout", {"size": 4}).apply(x, torch.zeros(4, dtype=torch.long),
                                                        ctx_for(torch.Generator().manual_seed(0), dataset="cifar10"))
    assert ((out == 0).all(1).flatten(1).sum(1) <= 16).all()


def test_random_erasing_area_and_aspect_within_bounds():
    n, s = 400, 64
    x = torch.full((n, 3, s, s), 0.5)
    out, _ = build_method("random-erasing").apply(x, torch.zeros(n, dtype=torch.long),
                                                  ctx_for(torch.Generator().manual_seed(0)))
    erased = (out != 0.5).any(1)
    hit = erased.flatten(1).any(1)
    assert 140 < int(hit.sum()) < 260  # p = 0.5
    for z in erased[hit]:
        rows, cols = z.any(1).nonzero()[:, 0], z.any(0).nonzero()[:, 0]
        hh, ww = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        share = hh * ww / (s * s)
        assert 0.02 * 0.85 <= share <= 0.4 * 1.05, share  # rounding of the sides only
        assert 0.3 * 0.8 <= hh / ww <= (1 / 0.3) * 1.25
        assert hh < s and ww < s
    vals = out[(out != 0.5)]
    assert vals.min() >= -1 and vals.max() <= 1 and vals.std() > 0.4  # random values, uniform in [-1, 1]


# ---------------------------------------------------------------- SamplePairing


def test_samplepairing_schedule_over_a_run():
    spe, epochs = 20, 200
    total = spe * epochs
    on = [pairing_on(s, total, spe) for s in range(total)]
    per_epoch = [on[e * spe: (e + 1) * spe] for e in range(epochs)]
    assert all(len(set(p)) == 1 for p in per_epoch)  # constant within an epoch
    flags = [p[0] for p in per_epoch]
    assert not any(flags[:20]) and not any(flags[180:])  # first and last tenth off
    middle = flags[20:180]
    assert middle == ([True] * 8 + [False] * 2) * 16  # 8 on, 2 off
    assert sum(on) == 128 * spe
    # a short run (3 epochs): off for the first and last tenth, on between
    assert [pairing_on(s, 30, 10) for s in range(30)] == [False] * 3 + [True] * 24 + [False] * 3


def test_samplepairing_schedule_options_as_shares_of_a_step_budget():
    # a 1,000-step run of 2 epochs never reaches an 8-on/2-off epoch cycle's "off"; as shares of the run it does
    total, spe = 1000, 500
    on = [pairing_on(s, total, spe, start=0.2, finetune=0.1, on=0.3, off=0.1, cycle="run") for s in range(total)]
    assert not any(on[:200]) and not any(on[900:])
    assert on[200:500] == [True] * 300 and on[500:600] == [False] * 100 and on[600:900] == [True] * 300
    # in epochs: 1 on, 1 off after the start share
    on = [pairing_on(s, 40, 4, start=0.0, finetune=0.0, on=1, off=1) for s in range(40)]
    assert on == ([True] * 4 + [False] * 4) * 5
    m = build_method("samplepairing")
    assert m.recorded_options == {"pairing_p": 1.0}  # the defaults: the record runs had before these options
    m = build_method("samplepairing", {"on": 4, "cycle": "epochs"})
    assert m.recorded_options == {"pairing_p": 1.0, "on": 4}
    for opts, msg in (({"cycle": "weeks"}, "cycle"), ({"start": 0.5, "finetune": 0.5}, "start \\+ finetune"),
                      ({"on": 0}, "on must be > 0"), ({"on": 2.5}, "on must be an integer"),
                      ({"start": -0.1}, "start must be >= 0")):
        with pytest.raises(ChimeraMixError, match=msg):
            build_method("samplepairing", opts)


def _tiny_data(n_per_class=4, classes=3, size=16, seed=0, segments=None, constant=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    if constant:  # one colour per image
        c = torch.randint(0, 256, (len(y), 3, 1, 1), generator=g, dtype=torch.uint8)
        imgs = c.expand(len(y), 3, size, size).contiguous()
    else:
        imgs = torch.randint(0, 256, (len(y), 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(imgs, y, tuple(f"c{i}" for i in range(classes)))


def test_samplepairing_averages_with_training_images_and_keeps_labels():
    subset = _tiny_data(constant=True)
    data = DeviceData(subset, torch.device("cpu"), 0)
    colours = normalize(subset.images[:, :, 0, 0])  # every image's colour in [-1, 1]
    idx = torch.arange(8)
    x = normalize(subset.images[idx])
    y = subset.labels[idx]
    method = build_method("samplepairing")
    ctx = ctx_for(torch.Generator().manual_seed(0), step=50, total=100, data=data, idx=idx, spe=10)
    out, t = method.apply(x, y, ctx)
    assert t is y and ctx.extra["paired"] == 1.0
    # each image is the mean of itself and some training image (any class)
    partner = 2 * out[:, :, 0, 0] - x[:, :, 0, 0]
    dist = (partner[:, None] - colours[None]).abs().amax(2)
    assert (dist.min(1).values < 1e-5).all()
    assert (out != x).any()
    # off phases leave the batch alone
    ctx = ctx_for(torch.Generator().manual_seed(0), step=2, total=100, data=data, idx=idx, spe=10)
    out, t = method.apply(x, y, ctx)
    assert torch.equal(out, x) and ctx.extra["paired"] == 0.0
    # pairing_p = 0.5: about half of the images are paired
    ctx = ctx_for(torch.Generator().manual_seed(0), step=50, total=100, data=data, idx=torch.arange(12).repeat(20), spe=10)
    xb = normalize(subset.images[ctx.idx])
    out, _ = build_method("samplepairing", {"pairing_p": 0.5}).apply(xb, subset.labels[ctx.idx], ctx)
    share = (out != xb).flatten(1).any(1).float().mean().item()
    assert 0.3 < share < 0.6 and ctx.extra["paired"] == 0.5


# ---------------------------------------------------------------- AutoAugment and TrivialAugment


@pytest.mark.parametrize("name", ["autoaugment", "trivialaugment"])
def test_policies_draw_per_sample_and_keep_shape_and_range(name):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    x = img.repeat(16, 1, 1, 1)
    y = torch.arange(16) % 3
    out, t = build_method(name).apply(x, y, ctx_for(torch.Generator().manual_seed(1)))
    assert t is y and out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1 and out.max() <= 1
    distinct = {tuple(o.flatten()[::37].tolist()) for o in out}
    assert len(distinct) >= 6  # one draw per batch would give at most 2 (applied or not)


def test_autoaugment_policy_follows_the_image_size():
    aa = build_method("autoaugment")
    assert aa.policy_for(32) == "cifar10" and aa.policy_for(64) == "cifar10" and aa.policy_for(96) == "imagenet"
    assert build_method("autoaugment", {"policy": "imagenet"}).policy_for(32) == "imagenet"
    x = torch.rand(4, 3, 96, 96) * 2 - 1
    out, _ = aa.apply(x, torch.zeros(4, dtype=torch.long), ctx_for(torch.Generator().manual_seed(0)))
    assert out.shape == x.shape


def _tv_reference(name, u, mag):
    """torchvision's own kernel for one operation (float [0, 1] images; posterize as uint8)."""
    import torchvision.transforms.v2.functional as TF

    if name == "ShearX":
        return TF.affine(u, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(mag)), 0.0], center=[0, 0])
    if name == "ShearY":
        return TF.affine(u, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(mag))], center=[0, 0])
    if name == "TranslateX":
        return TF.affine(u, angle=0.0, translate=[int(mag), 0], scale=1.0, shear=[0.0, 0.0])
    if name == "TranslateY":
        return TF.affine(u, angle=0.0, translate=[0, int(mag)], scale=1.0, shear=[0.0, 0.0])
    if name == "Rotate":
        return TF.rotate(u, angle=mag)
    if name == "Brightness":
        return TF.adjust_brightness(u, 1 + mag)
    if name == "Color":
        return TF.adjust_saturation(u, 1 + mag)
    if name == "Contrast":
        return TF.adjust_contrast(u, 1 + mag)
    if name == "Sharpness":
        return TF.adjust_sharpness(u, 1 + mag)
    if name == "Posterize":
        return TF.posterize((u * 255).round().to(torch.uint8), int(mag)).float() / 255
    if name == "Solarize":
        return TF.solarize(u, mag)
    if name == "AutoContrast":
        return TF.autocontrast(u)
    if name == "Equalize":
        return TF.equalize(u)
    if name == "Invert":
        return TF.invert(u)
    return u


@pytest.mark.parametrize("name, mags", [
    ("ShearX", [0.3, -0.2]), ("ShearY", [0.99, -0.3]), ("TranslateX", [14.5, -9.0]), ("TranslateY", [32.0, -3.2]),
    ("Rotate", [30.0, -135.0, 13.5]), ("Brightness", [0.9, -0.5]), ("Color", [0.7, -0.99]), ("Contrast", [0.5, -0.9]),
    ("Sharpness", [0.9, -0.6]), ("Posterize", [4, 2, 8]), ("Solarize", [0.5, 0.0, 1.0]), ("AutoContrast", [0.0]),
    ("Equalize", [0.0]), ("Invert", [0.0]), ("Identity", [0.0]),
])
def test_batched_operations_match_torchvision(name, mags):
    from chimeramix.methods.policies import OP, apply_ops

    g = torch.Generator().manual_seed(3)
    n = 6
    u = torch.randint(0, 256, (n, 3, 24, 24), generator=g).float() / 255
    u[0] = u[0] * 0.5 + 0.2  # a low-contrast image for autocontrast / equalize
    # each sample gets its own magnitude (and the last one a different operation), all in one call
    mag = torch.tensor([mags[i % len(mags)] for i in range(n)], dtype=torch.float32)
    op = torch.full((n,), OP[name])
    op[-1] = OP["Invert"] if name != "Invert" else OP["Identity"]
    out = apply_ops(u, op, mag)
    for i in range(n - 1):
        ref = _tv_reference(name, u[i: i + 1], float(mag[i]))[0]
        if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
            # nearest sampling: a pixel may flip at an exact rounding tie (float32 vs float64 matrices)
            assert (out[i] - ref).abs().gt(1e-6).float().mean() < 0.02
        else:
            assert torch.allclose(out[i], ref, atol=2e-6), name
    last = _tv_reference("Invert" if name != "Invert" else "Identity", u[-1:], 0.0)[0]
    assert torch.allclose(out[-1], last)


def test_skipping_unused_operations_changes_nothing():
    """The CPU path computes only the families in use; the accelerator path computes all and selects per sample."""
    from chimeramix.methods.policies import OPS, apply_ops

    g = torch.Generator().manual_seed(4)
    n = 3 * len(OPS)
    u = torch.randint(0, 256, (n, 3, 20, 20), generator=g).float() / 255
    op = torch.arange(n) % len(OPS)
    mag = torch.rand(n, generator=g) * 0.8
    mag[op == OPS.index("Posterize")] = 4
    for ops in (op, torch.full((n,), OPS.index("Sharpness")), op % 3):
        assert torch.equal(apply_ops(u, ops, mag, skip_absent=True), apply_ops(u, ops, mag, skip_absent=False))


# ---------------------------------------------------------------- GridMix and SegMix


def _pixelmix_setup(segments=None, seed=0):
    subset = _tiny_data(n_per_class=3, classes=2, size=16, constant=True, seed=seed)
    data = DeviceData(subset, torch.device("cpu"), 0, segments)
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 0, 4])
    rng = torch.Generator().manual_seed(seed)
    crop = CropFlip.sample(len(idx), 16, rng, "cpu")
    x = torch.full((len(idx), 3, 16, 16), 2.0)  # a value no training image has: reveals where x1 was kept
    ctx = ctx_for(rng, n_classes=2, data=data, idx=idx, crop=crop)
    return subset, data, idx, x, ctx


def _check_two_parents(subset, idx, out):
    """Per pixel: x1 (the 2.0 batch) or one image of the same class as x1; returns the x1 masks."""
    colours = normalize(subset.images[:, :, 0, 0])
    keep = (out == 2.0).all(1)
    for i, j in enumerate(idx.tolist()):
        same = colours[subset.labels == subset.labels[j]]
        other = out[i][:, ~keep[i]].T  # pixels not from x1
        if len(other):
            d = (other[:, None] - same[None]).abs().amax(2).min(1).values
            assert (d < 1e-6).all()  # each from a same-class image...
            assert (other - other[0]).abs().max() < 1e-6  # ...and all from one partner
    return keep


def test_gridmix_keeps_only_parent_pixels_on_a_grid():
    subset, data, idx, x, ctx = _pixelmix_setup()
    y = subset.labels[idx]
    # the public rule at the image's own size: 4 cells stretched to 16 + 4 = 20 px (5 px each), one crop per batch
    out, t = build_method("gridmix", {"p_generated": 1.0, "work_size": 16}).apply(x, y, ctx)
    assert t is y and ctx.extra["mixed"] == 1.0
    keep = _check_two_parents(subset, idx, out)
    assert 0.2 < keep.float().mean() < 0.8
    cell = 5
    ar = torch.arange(16)

    def on_grid(m, oy, ox):  # constant on every cell of a grid of 5 px cells shifted by (oy, ox)
        key = ((ar + oy) // cell)[:, None] * 100 + ((ar + ox) // cell)[None, :]
        return all(len(m[key == k].unique()) == 1 for k in key.unique())

    shared = [(oy, ox) for oy in range(4) for ox in range(4) if all(on_grid(m, oy, ox) for m in keep)]
    assert shared  # one offset fits every sample of the batch
    # and not trivially: a random mask is on no grid
    assert not any(on_grid(torch.rand(16, 16) < 0.5, oy, ox) for oy in range(4) for ox in range(4))


def test_gridmix_per_sample_offsets_are_the_option():
    subset, data, idx, x, ctx = _pixelmix_setup()
    method = build_method("gridmix", {"p_generated": 1.0, "work_size": 16, "grid_offset": "sample"})
    assert method.label == "GridMix (sample offset)"
    keep = _check_two_parents(subset, idx, method.apply(x, subset.labels[idx], ctx)[0])
    cell, ar = 4, torch.arange(16)

    def on_grid(m, oy, ox):
        key = ((ar + oy) // cell)[:, None] * 100 + ((ar + ox) // cell)[None, :]
        return all(len(m[key == k].unique()) == 1 for k in key.unique())

    for m in keep:
        assert any(on_grid(m, oy, ox) for oy in range(cell) for ox in range(cell))


def _blocky_segments():
    g = torch.Generator().manual_seed(0)
    # blocky label maps with 5 labels, different per image
    return torch.randint(0, 5, (6, 4, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2).to(torch.int32)


def test_segmix_bernoulli_masks_are_unions_of_whole_own_segments():
    segments = _blocky_segments()
    subset, data, idx, x, ctx = _pixelmix_setup(segments)
    y = subset.labels[idx]
    method = build_method("segmix", {"p_generated": 1.0, "seg_mask": "bernoulli"})
    assert method.label == "SegMix (bernoulli segments)"
    out, t = method.apply(x, y, ctx)
    assert t is y
    keep = _check_two_parents(subset, idx, out)
    seg = ctx.crop.apply(segments[idx])
    mixed = 0
    for m, s in zip(keep, seg):
        for label in s.unique():
            vals = m[s == label]
            assert vals.all() or not vals.any()  # a segment is taken whole or not at all
        mixed += int(0 < m.float().mean() < 1)
    assert mixed >= 2


def test_segmix_range_rule_mixes_two_parents():
    subset, data, idx, x, ctx = _pixelmix_setup(_blocky_segments())
    method = build_method("segmix", {"p_generated": 1.0})
    assert method.label == "SegMix"  # the public code's rule is the default
    keep = _check_two_parents(subset, idx, method.apply(x, subset.labels[idx], ctx)[0])
    assert sum(int(0 < m.float().mean() < 1) for m in keep) >= 2


def test_pixel_mixes_follow_chimeramix_batch_schedule():
    subset, data, idx, x, ctx = _pixelmix_setup()
    method = build_method("gridmix", {"p_generated": 0.0})
    out, _ = method.apply(x, subset.labels[idx], ctx)
    assert torch.equal(out, x) and ctx.extra["mixed"] == 0.0


# ---------------------------------------------------------------- cosine loss


def test_cosine_loss_is_one_minus_cosine_to_the_one_hot_target():
    y = torch.tensor([0, 2])
    logits = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    loss = build_method("cosine").loss(lambda x: logits, torch.zeros(2, 3, 4, 4), y)
    assert abs(loss.item() - 0.5 * (0.0 + 1.0)) < 1e-6


# ---------------------------------------------------------------- determinism and combinations


@pytest.mark.parametrize("name", [m for m in ALL if m not in ("none", "cosine")])
def test_same_generator_seed_same_output(name):
    segments = torch.randint(0, 4, (12, 16, 16), generator=torch.Generator().manual_seed(0)).to(torch.int32)
    subset = _tiny_data()
    data = DeviceData(subset, torch.device("cpu"), 0, segments)
    idx = torch.arange(12)
    method = build_method(name, {"p_generated": 1.0, "p": 1.0})

    def run(seed):
        rng = torch.Generator().manual_seed(seed)
        crop = CropFlip.sample(12, 16, rng, "cpu")
        ctx = ctx_for(rng, data=data, idx=idx, crop=crop, step=50, total=100, dataset="cifar10")
        out, t = method.apply(normalize(crop.apply(subset.images)), subset.labels, ctx)
        return out, t

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def _tiny_generator(seed=0):
    from chimeramix.models import MixingGenerator

    torch.manual_seed(seed)
    return MixingGenerator(ngf=4, n_res=1).eval()


def _generator_batch():
    """A batch of 12 crop-flipped images with the context ChimeraMix needs (tiny random generator)."""
    subset = _tiny_data()
    data = DeviceData(subset, torch.device("cpu"), 0)
    rng = torch.Generator().manual_seed(0)
    crop = CropFlip.sample(12, 16, rng, "cpu")
    ctx = StepContext(0, 10, 3, rng, torch.arange(12), crop, data, _tiny_generator())
    return subset, normalize(crop.apply(subset.images)), ctx


@pytest.mark.parametrize("combo", ["chimeramix+autoaugment", "chimeramix+trivialaugment"])
def test_chimeramix_combinations_chain_both_parts(combo):
    method = build_method(combo, {"mask": "grid", "p_generated": 1.0, "grid_k": 4}, {"work_size": 16, "seed": 0})
    assert method.parts[0].work_size == 16 and method.recorded_options["work_size"] == 16
    assert isinstance(method, Chain) and method.needs_generator and method.name == combo
    assert method.label.startswith("ChimeraMix+Grid + ")
    subset, x, ctx = _generator_batch()
    out, t = method.apply(x, subset.labels, ctx)
    assert torch.equal(t, subset.labels) and ctx.extra["generated"] == 1.0
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.allclose(out, x, atol=1e-3)


# ---------------------------------------------------------------- one real classifier step per method


@pytest.fixture(scope="module")
def tiny_subset():
    return _tiny_data(n_per_class=4, classes=3, size=16)


@pytest.mark.parametrize("name", ALL + ["chimeramix+autoaugment", "chimeramix+trivialaugment"])
def test_every_method_trains_one_classifier_step(name, tiny_subset):
    cfg = make_config(ClassifierConfig, "fast", data="cifair10", arch="wrn16-2", steps=2, batch_size=6, method=name,
                      method_options={"p_generated": 1.0, "p": 1.0, "mask": "grid", "work_size": 16})
    cfg = resolve_classifier(cfg, 16, len(tiny_subset))
    method = build_method(name, cfg.method_options, {"seed": 0, "work_size": 16})
    segments = _segments_at_native(tiny_subset, None, method.options) if method.needs_segments else None
    torch.manual_seed(0)
    data = DeviceData(tiny_subset, torch.device("cpu"), 0, segments)
    G = _tiny_generator() if method.needs_generator else None
    trainer = ClassifierTrainer(cfg, data, torch.Generator().manual_seed(0), method, G)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for step in range(2):
        out = trainer.step(step)
        assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_methods_command_lists_every_method(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    from cli.methods import method_rows, methods

    rows = method_rows()
    assert [r[0] for r in rows] == known_methods()
    methods()
    text = capsys.readouterr().out
    for name, stage, label, defaults, paper in rows:
        assert name in text
    assert dict((r[0], r[1]) for r in rows)["chimeramix+trivialaugment"] == "batch source + pixel policy"
    assert "stage order" in text and "chimeramix+trivialaugment+mixup" in text
    for words in ("Zhang", "Yun", "DeVries", "Zhong", "Barz", "Cubuk", "Müller", "Inoue", "Abhishek", "gamma=2.8",
                  "alpha=1.0", "pairing_p=1.0", "num_magnitude_bins=31"):
        assert words in text
    assert np.all([r[4] for r in rows])


# ---------------------------------------------------------------- the public code's order and precision


class _Recorder(Method):
    """A real policy-shaped method that negates images and records what it was applied to."""

    name = "recorder"
    stage = "pixel"

    def __init__(self):
        super().__init__()
        self.seen = []

    def apply(self, x, y, ctx):
        self.seen.append(x.clone())
        return -x, y


@pytest.mark.parametrize("order", ["parents", "composition"])
def test_policy_augments_both_parents_before_composing_by_default(order):
    from chimeramix.methods import ChimeraMix

    subset, x, ctx = _generator_batch()
    cm = ChimeraMix(mask="grid", p_generated=1.0, work_size=16, seed=0, aug_order=order)
    rec = _Recorder()
    out, _ = Chain([cm, rec]).apply(x, subset.labels, ctx)
    if order == "parents":  # the public code: AutoAugment is part of each image's own transform, then the pair is composed
        assert len(rec.seen) == 2 and torch.equal(rec.seen[0], x) and not torch.equal(rec.seen[1], x)
        assert not torch.allclose(out, -rec.seen[0])
    else:  # compose, then augment the composition
        assert len(rec.seen) == 1 and not torch.allclose(rec.seen[0], x, atol=1e-3)
        assert torch.equal(out, -rec.seen[0])


def test_policy_alone_when_the_batch_is_not_replaced():
    from chimeramix.methods import ChimeraMix

    subset, x, ctx = _generator_batch()
    rec = _Recorder()
    out, _ = Chain([ChimeraMix(mask="grid", p_generated=0.0), rec]).apply(x, subset.labels, ctx)
    assert len(rec.seen) == 1 and torch.equal(out, -x)


@pytest.mark.parametrize("name", ["mixup", "zeta-mixup", "cutmix", "autoaugment"])
def test_methods_run_in_fp32_outside_bf16_autocast(name, tiny_subset):
    """Only networks run in bf16: mixing weights, soft labels and policies' pixel ops stay fp32."""
    cfg = make_config(ClassifierConfig, "fast", data="cifair10", arch="wrn16-2", steps=2, batch_size=6, method=name,
                      amp="on", method_options={"p": 1.0})
    cfg = resolve_classifier(cfg, 16, len(tiny_subset))
    method = build_method(name, cfg.method_options)
    seen = []
    inner = method.apply

    def recording_apply(x, y, ctx):
        out, target = inner(x, y, ctx)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype, target.dtype))
        return out, target

    method.apply = recording_apply
    trainer = ClassifierTrainer(cfg, DeviceData(tiny_subset, torch.device("cpu"), 0), torch.Generator().manual_seed(0),
                                method)
    assert trainer.speed.amp  # the forward does run in bf16
    out = trainer.step(0)
    assert torch.isfinite(out["loss"])
    enabled, xdtype, tdtype = seen[0]
    assert not enabled and xdtype == torch.float32 and tdtype in (torch.float32, torch.long)


def test_cosine_loss_with_cross_entropy_head_trains_the_head(tiny_subset):
    """Barz & Denzler's L_cos + 0.1 L_xent: a softmax head on the normalised embedding, in the optimizer and checkpoint."""
    import torch.nn.functional as F

    m = build_method("cosine", {"xent": 0.1})
    assert m.label == "Cosine loss + 0.1 cross-entropy" and build_method("cosine").label == "Cosine loss"
    head = m.modules(3, "cpu")["xent_head"]
    y = torch.tensor([0, 2])
    logits = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    expected = 0.5 + 0.1 * F.cross_entropy(head(F.normalize(logits, dim=1)), y).item()
    assert abs(m.loss(lambda x: logits, torch.zeros(2, 3, 4, 4), y).item() - expected) < 1e-6
    cfg = resolve_classifier(make_config(ClassifierConfig, "fast", data="x", arch="wrn16-2", steps=2, batch_size=6,
                                         method="cosine", method_options={"xent": 0.1}), 16, len(tiny_subset))
    method = build_method("cosine", {"xent": 0.1})
    trainer = ClassifierTrainer(cfg, DeviceData(tiny_subset, torch.device("cpu"), 0), torch.Generator().manual_seed(0), method)
    w = method.head.weight.detach().clone()
    trainer.step(0)
    assert not torch.equal(w, method.head.weight)  # the head learns
    assert "method.xent_head" in trainer.state().modules  # and is saved with resumable state
    with pytest.raises(ChimeraMixError, match="xent"):
        build_method("cosine", {"xent": -1})


# ---------------------------------------------------------------- MethodSpec: options vs run context


@pytest.mark.parametrize("name,opts,words", [
    ("chimeramix", {"seed": 3}, "'seed' is not an option of method 'chimeramix': it is the run's --seed (use --seed 3)"),
    ("gridmix", {"seed": 1}, "--seed 1"),
    ("chimeramix", {"work_size": 32}, "from the generator run"),
    ("segmix", {"needs_segments": False}, "needs segment maps"),
    ("mixup", {"seed": 0}, "run's --seed"),
])
def test_run_context_given_as_an_option_is_refused_in_one_line(name, opts, words):
    from chimeramix.methods import MethodSpec

    with pytest.raises(ChimeraMixError, match=re.escape(words)) as e:
        MethodSpec.parse(name).check_options(opts)
    assert "\n" not in str(e.value)


def test_method_spec_parses_a_name_once_and_builds_with_the_run_context():
    from chimeramix.methods import ChimeraMix, MethodSpec

    spec = MethodSpec.parse("chimeramix+autoaugment")
    assert [c.name for c in spec.parts] == ["chimeramix", "autoaugment"] and spec.needs_generator
    assert "seed" not in spec.defaults and "work_size" not in spec.defaults and "policy" in spec.defaults
    m = spec.build({"mask": "grid", "alpha": 9}, {"seed": 7, "work_size": 32})  # alpha: another method's, ignored
    cm = m.parts[0]
    assert isinstance(cm, ChimeraMix) and (cm.seed, cm.work_size) == (7, 32) and "alpha" not in m.options
    # run.json keeps recording the context beside the options, so finished runs of earlier versions are reused
    assert m.recorded_options["seed"] == 7 and m.recorded_options["work_size"] == 32 and m.recorded_options["mask"] == "grid"
    seg = MethodSpec.parse("segmix").build({}, {"seed": 2})
    assert seg.needs_segments and seg.recorded_options["needs_segments"] is True and seg.recorded_options["seed"] == 2
    with pytest.raises(ChimeraMixError, match="unknown method 'nope'"):
        MethodSpec.parse("chimeramix+nope")


def test_methods_command_lists_no_run_internals():
    from cli.methods import method_rows

    for name, stage, label, defaults, paper in method_rows():
        assert "seed=" not in defaults and "needs_segments" not in defaults, (name, defaults)
        if name == "chimeramix":
            assert "work_size" not in defaults and "p_generated=0.5" in defaults


# ---------------------------------------------------------------- method pipelines: stages and their order

from chimeramix.methods import MethodSpec, STAGES  # noqa: E402


def test_every_method_has_a_stage_and_the_baseline_none():
    assert METHODS["none"].stage is None
    assert {c.stage for n, c in METHODS.items() if n != "none"} <= set(STAGES)
    assert [METHODS[n].stage for n in ("chimeramix", "gridmix", "segmix", "samplepairing")] == ["source"] * 4
    assert [METHODS[n].stage for n in ("autoaugment", "trivialaugment", "cutout", "random-erasing")] == ["pixel"] * 4
    assert [METHODS[n].stage for n in ("mixup", "cutmix", "zeta-mixup")] == ["label"] * 3 and METHODS["cosine"].stage == "loss"


@pytest.mark.parametrize("name", ["chimeramix+autoaugment", "chimeramix+trivialaugment", "chimeramix+mixup",
                                  "chimeramix+trivialaugment+mixup", "cutmix+zeta-mixup", "trivialaugment+mixup",
                                  "segmix+cutout+cutmix+cosine"])
def test_chains_in_stage_order_parse(name):
    assert MethodSpec.parse(name).name == name


@pytest.mark.parametrize("name, words", [
    ("mixup+chimeramix", "chimeramix \\(batch source\\) cannot follow mixup \\(label mixer\\)"),
    ("mixup+mixup", "'mixup' twice"),
    ("gridmix+chimeramix", "two batch sources"),
    ("none+mixup", "'none' is the baseline"),
    ("mixup+trivialaugment", "cannot follow mixup"),
    ("cosine+mixup", "cannot follow cosine"),
])
def test_chains_out_of_order_or_repeated_are_refused_naming_the_order(name, words):
    with pytest.raises(ChimeraMixError, match=words) as e:
        MethodSpec.parse(name)
    assert "stage order" in str(e.value) and "e.g. chimeramix+trivialaugment+mixup" in str(e.value)
    assert "\n" not in str(e.value)


def test_label_mixer_after_chimeramix_sees_the_compositions_and_gives_fp32_soft_labels():
    opts, context = {"mask": "grid", "p_generated": 1.0, "grid_k": 4}, {"work_size": 16, "seed": 0}
    subset, x, ctx = _generator_batch()
    alone, y = build_method("chimeramix", opts, context).apply(x.clone(), subset.labels, ctx)
    assert y.dtype == torch.long
    _, x2, ctx2 = _generator_batch()
    chain = build_method("chimeramix+mixup", opts, context)
    assert chain.label == "ChimeraMix+Grid + MixUp"
    out, t = chain.apply(x2, subset.labels, ctx2)
    assert t.dtype == torch.float32 and t.shape == (12, 3)
    assert torch.allclose(t.sum(1), torch.ones(12))
    # MixUp mixed the compositions (not the parents): its output is a convex mix of `alone`'s images, same rng draws
    lam_rng = ctx2.rng
    assert out.shape == alone.shape and not torch.allclose(out, alone)
    assert torch.allclose(out.mean(), alone.mean(), atol=0.05)  # a convex mix of the batch keeps its mean
    assert lam_rng is ctx2.rng


def test_chimeramix_with_policy_keeps_its_draws_under_the_stage_rules():
    """chimeramix+autoaugment runs exactly as before stages existed: the policy goes to the parents."""
    opts, context = {"mask": "grid", "p_generated": 1.0, "grid_k": 4}, {"work_size": 16, "seed": 0}
    subset, x, ctx = _generator_batch()
    cm = build_method("chimeramix", opts, context)
    policy = build_method("autoaugment")
    want, _ = cm.apply(x.clone(), subset.labels, ctx, augment=policy)
    _, x2, ctx2 = _generator_batch()
    got, _ = build_method("chimeramix+autoaugment", opts, context).apply(x2, subset.labels, ctx2)
    assert torch.equal(want, got)


def test_chimeramix_chain_without_generator_is_refused(tmp_path):
    from chimeramix.train.classifier import fit_classifier

    cfg = make_config(ClassifierConfig, "fast", data="digits", spc=2, steps=2, method="chimeramix+mixup", device="cpu",
                      out=str(tmp_path / "r"))
    with pytest.raises(ChimeraMixError, match="needs a trained generator"):
        fit_classifier(cfg)
    assert not (tmp_path / "r").exists()
