"""Occlusion baselines: Cutout and Random Erasing, per-sample boxes drawn on the device.

kornia.augmentation.RandomErasing would fit in shape, but it fills a box with
one constant (Zhong et al.'s published variant fills it with random values),
samples the aspect ratio log-uniformly (their code: uniformly in (r1, 1/r1))
and draws from torch's global RNG rather than the step's rng (so a
resumed run would not repeat its boxes). Cutout has no kornia or torchvision
class. Both are a few lines of batched box arithmetic here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ChimeraMixError
from .base import Method, StepContext
from .common import box_masks, centred_boxes, check_number, check_probability

# Cutout side lengths DeVries & Taylor published, at each dataset's native resolution.
CUTOUT_SIZES = {"cifar10": (16, 32), "cifair10": (16, 32), "cifar100": (8, 32), "cifair100": (8, 32), "stl10": (24, 96)}


def cutout_size(dataset: str, image_size: int) -> int:
    """The published side for a known dataset (scaled if its images were resized), else image_size // 2.

    `dataset` may be a name ('cifair10') or a folder path; a folder whose last
    part is a known name (e.g. ../shared/data/cifar10) counts as that dataset.
    """
    key = Path(str(dataset)).name.lower() if dataset else ""
    if key in CUTOUT_SIZES:
        side, native = CUTOUT_SIZES[key]
        return max(1, round(side * image_size / native))
    return max(1, image_size // 2)


class Cutout(Method):
    """One square hole per image, filled with 0 (the mean in [-1, 1] space).

    The centre is uniform over the whole image, so holes are clipped at the
    borders (DeVries & Taylor's code); the side is 16 px for CIFAR-10/ciFAIR-10,
    8 for CIFAR-100/ciFAIR-100, 24 for STL-10, image size // 2 otherwise
    (size=None), or the given size.
    """

    name = "cutout"
    label = "Cutout"
    paper = "DeVries, Taylor: Improved Regularization of Convolutional Neural Networks with Cutout, arXiv 1708.04552, 2017"
    defaults = {"size": None}
    stage = "pixel"

    def __init__(self, **options):
        super().__init__(**options)
        s = self.options["size"]
        self.size = None if s is None else check_number("size", s, self.name, at_least=1, integer=True,
                                                        why=" (the hole's side in pixels)")

    def side(self, ctx: StepContext, image_size: int) -> int:
        return self.size if self.size is not None else cutout_size(ctx.dataset, image_size)

    def apply(self, x, y, ctx: StepContext):
        n, _, h, w = x.shape
        side = self.side(ctx, w)
        cy = torch.randint(0, h, (n,), generator=ctx.rng, device=x.device)
        cx = torch.randint(0, w, (n,), generator=ctx.rng, device=x.device)
        hole = box_masks(*centred_boxes(cy, cx, side, side, h, w), h, w)
        return x.masked_fill(hole, 0.0), y


class RandomErasing(Method):
    """With probability p, a rectangle of area share U(sl, sh) and aspect U(r1, 1/r1) gets random values.

    As Zhong et al.'s code: the box must fit inside the image (else another
    attempt), its top-left corner is uniform over the places where it fits,
    and each erased pixel and channel takes a uniform random value (here in
    [-1, 1], the image range). Their code retries up to 100 times; here 10
    attempts are drawn at once per sample and the first that fits is used
    (all 10 failing is astronomically rare; the image is then left as it is).
    """

    name = "random-erasing"
    label = "Random Erasing"
    paper = "Zhong, Zheng, Kang, Li, Yang: Random Erasing Data Augmentation, AAAI 2020"
    defaults = {"p": 0.5, "sl": 0.02, "sh": 0.4, "r1": 0.3}
    stage = "pixel"
    attempts = 10

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        self.p = check_probability("p", o["p"], self.name)
        self.sl = check_number("sl", o["sl"], self.name, above=0, why=" (the smallest erased area share)")
        self.sh = check_number("sh", o["sh"], self.name, above=0, why=" (the largest erased area share)")
        self.r1 = check_number("r1", o["r1"], self.name, above=0, why=" (aspect ratios run from r1 to 1/r1)")
        if not self.sl <= self.sh <= 1:
            raise ChimeraMixError(f"random-erasing: need 0 < sl <= sh <= 1 (area shares), got sl={o['sl']!r}, sh={o['sh']!r}")
        if self.r1 > 1:
            raise ChimeraMixError(f"random-erasing: r1 must be in (0, 1] (aspect ratios run from r1 to 1/r1), got {o['r1']!r}")

    def boxes(self, n: int, h: int, w: int, rng: torch.Generator, device):
        """Per-sample (y1, x1, y2, x2, erase): the first fitting attempt; erase is False where none fits or the coin says no."""
        a = self.attempts
        area = (self.sl + (self.sh - self.sl) * torch.rand(n, a, generator=rng, device=device)) * (h * w)
        lo, hi = self.r1, 1.0 / self.r1
        aspect = lo + (hi - lo) * torch.rand(n, a, generator=rng, device=device)
        bh = torch.round(torch.sqrt(area * aspect)).long()
        bw = torch.round(torch.sqrt(area / aspect)).long()
        fits = (bh < h) & (bw < w) & (bh > 0) & (bw > 0)
        first = torch.argmax(fits.to(torch.int8), dim=1, keepdim=True)
        bh, bw = bh.gather(1, first)[:, 0], bw.gather(1, first)[:, 0]
        ok = fits.gather(1, first)[:, 0]
        # top-left corner uniform in [0, h - bh] x [0, w - bw] (inclusive, as random.randint in their code)
        y1 = (torch.rand(n, generator=rng, device=device) * (h - bh + 1)).long().clamp_max(h - bh)
        x1 = (torch.rand(n, generator=rng, device=device) * (w - bw + 1)).long().clamp_max(w - bw)
        coin = torch.rand(n, generator=rng, device=device) < self.p
        return y1, x1, y1 + bh, x1 + bw, ok & coin

    def apply(self, x, y, ctx: StepContext):
        n, c, h, w = x.shape
        y1, x1, y2, x2, erase = self.boxes(n, h, w, ctx.rng, x.device)
        box = box_masks(y1, x1, y2, x2, h, w) & erase.view(n, 1, 1, 1)
        noise = torch.rand(x.shape, generator=ctx.rng, device=x.device, dtype=x.dtype) * 2 - 1
        return torch.where(box, noise, x), y
