"""Mixing masks: random grids and Felzenszwalb segments (segmentations computed once)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import felzenszwalb

MASK_KINDS = ("grid", "seg")


def grid_masks(n: int, size: int, k: int, gen: torch.Generator, device) -> torch.Tensor:
    """Bernoulli(0.5) cells of a k x k grid at size x size, shifted by a random offset per sample.

    A (k+1) x (k+1) grid is nearest-upsampled to size + one cell, then cropped
    back to size at a random offset, so cell borders move from sample to sample.
    Returns float {0, 1}, N x 1 x size x size.
    """
    cell = max(size // k, 1)
    cells = (torch.rand(n, k + 1, k + 1, generator=gen, device=device) < 0.5).float()
    big = cells.repeat_interleave(cell, 1).repeat_interleave(cell, 2)  # n x (k+1)cell x (k+1)cell
    oy = torch.randint(0, cell, (n,), generator=gen, device=device)
    ox = torch.randint(0, cell, (n,), generator=gen, device=device)
    ar = torch.arange(size, device=device)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    return big[torch.arange(n, device=device)[:, None, None], rows, cols][:, None]


def compute_segments(images: torch.Tensor, scale: float, min_size: int, sigma: float = 0.8, workers: int | None = None) -> torch.Tensor:
    """Felzenszwalb label maps (int32, N x H x W, labels 0..K-1 per image) of uint8 N x 3 x H x W images.

    Run once per training image; the maps then live beside the images on the device.
    """
    arr = images.permute(0, 2, 3, 1).cpu().numpy()

    def one(img: np.ndarray) -> np.ndarray:
        seg = felzenszwalb(img, scale=scale, sigma=sigma, min_size=min_size)
        return np.unique(seg, return_inverse=True)[1].reshape(seg.shape).astype(np.int32)

    # felzenszwalb is compiled code and releases the GIL for most of its work.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        maps = list(pool.map(one, arr))
    return torch.from_numpy(np.stack(maps)) if maps else torch.zeros(0, *images.shape[2:], dtype=torch.int32)


def segments_at(images: torch.Tensor, seg_size: int, out_size: int, scale: float, min_size: int, sigma: float = 0.8) -> torch.Tensor:
    """Segment uint8 images at seg_size x seg_size (the resolution the Felzenszwalb parameters are meant for),
    returning label maps at out_size (nearest), the resolution the images live at on the device."""
    from .augment import resize_uint8

    maps = compute_segments(resize_uint8(images, seg_size), scale, min_size, sigma)
    if seg_size != out_size:
        maps = F.interpolate(maps[:, None].float(), size=(out_size, out_size), mode="nearest")[:, 0].to(torch.int32)
    return maps


def segment_pixel_masks(segments: torch.Tensor, gen: torch.Generator, k: int | None = None) -> torch.Tensor:
    """Take each segment with probability 0.5: float {0, 1}, N x 1 x H x W, a union of whole segments.

    k: an upper bound on the labels (pass it in the hot loop to spare a device sync).
    """
    n = segments.shape[0]
    if k is None:
        k = int(segments.max().item()) + 1 if segments.numel() else 1
    take = (torch.rand(n, k, generator=gen, device=segments.device) < 0.5).float()
    return torch.gather(take, 1, segments.reshape(n, -1).long()).reshape(n, 1, *segments.shape[1:])


def to_feature_size(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Reduce a pixel mask to feature resolution by majority over each cell (area average, rounded)."""
    if mask.shape[-1] == size:
        return mask
    return (F.adaptive_avg_pool2d(mask, size) >= 0.5).float()


def segment_masks(segments: torch.Tensor, size: int, gen: torch.Generator, k: int | None = None) -> torch.Tensor:
    return to_feature_size(segment_pixel_masks(segments, gen, k), size)


def sample_masks(kind: str, n: int, size: int, gen: torch.Generator, device, segments: torch.Tensor | None = None,
                 grid_k: int = 4, num_segments: int | None = None):
    """Masks at feature size for a batch: `segments` are the (augmented) label maps of the first images."""
    if kind == "grid":
        return grid_masks(n, size, grid_k, gen, device)
    if kind == "seg":
        if segments is None:
            raise ValueError("seg masks need the label maps of the batch")
        return segment_masks(segments, size, gen, num_segments)
    raise ValueError(f"unknown mask kind {kind!r}")
