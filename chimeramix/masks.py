"""Mixing masks: random grids and Felzenszwalb segments (segmentations computed once).

A mask is 1 where the composition takes the FIRST image's features and 0 where it
takes the partner's. Two families of rules live here, each with the public code's
rule and the paper text's reading (docs/fidelity.md says which preset uses which):

- grid: k x k Bernoulli(0.5) cells; `offset="batch"` (public code) stretches the
  k cells to size + size/k and crops back at ONE random offset per batch;
  `offset="sample"` uses cells of size/k with an offset drawn per sample.
- seg: `rule="range"` (public code) takes a contiguous range of segment labels
  [l, u) of the PARTNER's segmentation (never its last label) and fills it with
  the first image's features; `rule="bernoulli"` (the paper's text) takes each
  segment of the first image with probability 0.5.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import felzenszwalb

from .errors import ChimeraMixError

MASK_KINDS = ("grid", "seg")
SEG_RULES = ("range", "bernoulli")
GRID_OFFSETS = ("batch", "sample")
MASK_RESIZES = ("nearest", "majority")
SEG_INPUTS = ("float", "uint8")


def check_choice(option: str, value, choices) -> None:
    """One-line error for a value outside a fixed set of choices (CLI options and run configs alike)."""
    if value not in choices:
        raise ChimeraMixError(f"unknown {option} '{value}': choose {' or '.join(choices)}")


@dataclass(frozen=True)
class MaskSpec:
    """How masks are drawn: resolved once per generator run, stored in run.json, read back by the classifier stage."""

    kind: str = "seg"
    seg_rule: str = "range"
    grid_offset: str = "batch"
    grid_k: int = 4
    resize: str = "nearest"  # pixel mask -> feature size: nearest (public code) or majority over each cell

    def __post_init__(self):
        check_choice("--mask", self.kind, MASK_KINDS)
        check_choice("--seg-mask", self.seg_rule, SEG_RULES)
        check_choice("--grid-offset", self.grid_offset, GRID_OFFSETS)
        check_choice("--mask-resize", self.resize, MASK_RESIZES)
        if int(self.grid_k) < 1:
            raise ChimeraMixError(f"--grid-k {self.grid_k} is out of range: it needs at least 1 cell per side")

    @classmethod
    def from_config(cls, cfg) -> "MaskSpec":
        """From a config object or dict with the generator's mask fields (older runs lack some: their defaults then)."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        d = cls()
        return cls(get("mask") or d.kind, get("seg_mask") or d.seg_rule, get("grid_offset") or d.grid_offset,
                   int(get("grid_k") or d.grid_k), get("mask_resize") or d.resize)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        return "Seg" if self.kind == "seg" else "Grid"

    def sample(self, n: int, size: int, gen: torch.Generator, device, seg1: torch.Tensor | None = None,
               seg2: torch.Tensor | None = None, num_segments: int | None = None) -> torch.Tensor:
        """Masks at size x size (float {0, 1}, N x 1 x size x size) for a batch.

        seg1 / seg2: the (augmented) label maps of the first images and of their partners, at any resolution
        (the seg rules need the one they read: bernoulli seg1, range seg2); they are reduced to `size` by `resize`.
        """
        if self.kind == "grid":
            if self.grid_offset == "batch":
                return grid_masks_batch_offset(n, size, self.grid_k, gen, device)
            return grid_masks(n, size, self.grid_k, gen, device)
        if self.seg_rule == "range":
            if seg2 is None:
                raise ValueError("range seg masks need the partners' label maps")
            pixel = segment_range_masks(seg2, gen)
        else:
            if seg1 is None:
                raise ValueError("bernoulli seg masks need the first images' label maps")
            pixel = segment_pixel_masks(seg1, gen, num_segments)
        return to_feature_size(pixel, size, self.resize)


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


def grid_masks_batch_offset(n: int, size: int, k: int, gen: torch.Generator, device) -> torch.Tensor:
    """The public code's grid: k x k Bernoulli(0.5) cells, nearest-stretched to size + size // k, one crop per batch.

    At 16 x 16 features and k = 4 the cells are 5 pixels wide and every sample of the
    batch shares the crop offset (drawn in [0, size // k - 1]).
    """
    pad = size // k
    cells = (torch.rand(n, 1, k, k, generator=gen, device=device) < 0.5).float()
    big = F.interpolate(cells, size=(size + pad, size + pad), mode="nearest")
    # The offset stays a device tensor (gathered by index, not sliced) so drawing it costs no host sync.
    oy, ox = torch.randint(0, max(pad, 1), (2,), generator=gen, device=device)
    ar = torch.arange(size, device=device)
    return big[:, :, (oy + ar)[:, None], (ox + ar)[None, :]]


def segment_range_masks(segments: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The public code's segment rule: 1 on a contiguous range of labels [l, u) of each map, 0 elsewhere.

    With K = max label + 1 of the map: l uniform in [0, max(1, K-1) - 1], u uniform in
    [l + 1, max(l + 2, K) - 1], so the last label is never taken when K >= 2.
    Vectorised over the batch (the public code loops per sample). float {0, 1}, N x 1 x H x W.
    """
    n = segments.shape[0]
    flat = segments.reshape(n, -1).long()
    k = flat.amax(1) + 1
    lo_count = torch.clamp(k - 1, min=1)
    lo = (torch.rand(n, generator=gen, device=segments.device) * lo_count).long().minimum(lo_count - 1)
    up_count = torch.clamp(torch.maximum(lo + 2, k) - (lo + 1), min=1)
    up = lo + 1 + (torch.rand(n, generator=gen, device=segments.device) * up_count).long().minimum(up_count - 1)
    take = (flat >= lo[:, None]) & (flat < up[:, None])
    return take.float().reshape(n, 1, *segments.shape[1:])


def compute_segments(images: torch.Tensor, scale: float, min_size: int, sigma: float = 0.8, workers: int | None = None,
                     as_float: bool = True) -> torch.Tensor:
    """Felzenszwalb label maps (int32, N x H x W, labels 0..K-1 per image) of uint8 N x 3 x H x W images.

    as_float: segment the normalised image in [-1, 1], as the public code does (its colour distances, and
    so its segment counts at a given scale, differ from a uint8 image's, which skimage reads as [0, 1]).
    Run once per training image; the maps then live beside the images on the device.
    """
    arr = images.permute(0, 2, 3, 1).cpu().numpy()

    def one(img: np.ndarray) -> np.ndarray:
        if as_float:
            img = img.astype(np.float32) / 127.5 - 1.0
        seg = felzenszwalb(img, scale=scale, sigma=sigma, min_size=min_size)
        return np.unique(seg, return_inverse=True)[1].reshape(seg.shape).astype(np.int32)

    # felzenszwalb is compiled code and releases the GIL for most of its work.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        maps = list(pool.map(one, arr))
    return torch.from_numpy(np.stack(maps)) if maps else torch.zeros(0, *images.shape[2:], dtype=torch.int32)


def segments_at(images: torch.Tensor, seg_size: int, out_size: int, scale: float, min_size: int, sigma: float = 0.8,
                as_float: bool = True) -> torch.Tensor:
    """Segment uint8 images at seg_size x seg_size (the resolution the Felzenszwalb parameters are meant for),
    returning label maps at out_size (nearest), the resolution the images live at on the device."""
    from .augment import resize_uint8

    maps = compute_segments(resize_uint8(images, seg_size), scale, min_size, sigma, as_float=as_float)
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


def to_feature_size(mask: torch.Tensor, size: int, mode: str = "majority") -> torch.Tensor:
    """Reduce (or enlarge) a pixel mask to size x size.

    nearest: F.interpolate's nearest (one pixel per cell, as the public code);
    majority: the area average of each cell, rounded (a cell goes with most of its pixels).
    """
    if mask.shape[-1] == size:
        return mask
    if mode == "nearest" or size > mask.shape[-1]:
        return F.interpolate(mask, size=(size, size), mode="nearest")
    return (F.adaptive_avg_pool2d(mask, size) >= 0.5).float()


def mask_statistics(masks: torch.Tensor) -> dict:
    """Mean connected regions of 1s (4-connectivity) and mean share of 1s of N x 1 x H x W {0, 1} masks."""
    from skimage.measure import label

    m = masks[:, 0].cpu().numpy() > 0.5
    regions = [int(label(x, connectivity=1).max()) for x in m]
    return {"regions": float(np.mean(regions)), "area_first": float(m.mean()), "n": int(len(m))}
