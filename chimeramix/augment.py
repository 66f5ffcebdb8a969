"""Batched, per-sample augmentation on the device: crop with reflect padding, flip, resize, normalise.

kornia.augmentation.RandomCrop/RandomHorizontalFlip would do the same, but
they resample float images through an affine warp and cannot carry integer
segment label maps along exactly; one integer gather does
crop and flip for uint8 images and label maps alike, exactly and in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class CropFlip:
    """Per-sample parameters: crop offset in [0, 2*pad] on each axis and a flip flag."""

    oy: torch.Tensor
    ox: torch.Tensor
    flip: torch.Tensor
    pad: int

    @classmethod
    def sample(cls, n: int, size: int, rng: torch.Generator, device, flip: bool = True) -> "CropFlip":
        pad = max(size // 8, 0)
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=rng, device=device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=rng, device=device)
        fl = torch.rand(n, generator=rng, device=device) < 0.5 if flip else torch.zeros(n, dtype=torch.bool, device=device)
        return cls(oy, ox, fl, pad)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Crop/flip N x C x H x W (or N x H x W label maps) of any dtype, at the size the parameters were drawn for."""
        squeeze = x.dim() == 3
        if squeeze:
            x = x[:, None]
        n, c, h, w = x.shape
        dev = x.device
        rows = _reflect((self.oy[:, None] - self.pad) + torch.arange(h, device=dev), h)
        cols = _reflect((self.ox[:, None] - self.pad) + torch.arange(w, device=dev), w)
        cols = torch.where(self.flip[:, None], cols.flip(1), cols)
        out = x[
            torch.arange(n, device=dev)[:, None, None, None],
            torch.arange(c, device=dev)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        return out[:, 0] if squeeze else out


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect-pad index arithmetic (edge pixel not repeated), as F.pad(mode='reflect')."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (mean = std = 0.5, as the paper). Never modifies x (even a float x)."""
    return x.to(torch.float32, copy=True).div_(127.5).sub_(1.0)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> float [0, 1] for saving pictures."""
    return (x.float() + 1).div(2).clamp(0, 1)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a float batch to size x size (antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < x.shape[-1]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return resize(x.float(), size).round().clamp(0, 255).to(torch.uint8)

