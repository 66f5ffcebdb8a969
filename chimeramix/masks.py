"""Mixing masks: random grids and Felzenszwalb segments (segmentations computed once).

A composition of K parents (K = 2: the paper's pairs) takes each location's features from one parent. A mask is
that assignment as K one-hot channels, N x K x h x w (channel j: where parent j's features go; parent 0 is the
batch's own image). Binary consumers (GridMix, SegMix, export's pair bits) read channel 0: 1 where the first image
is kept. Two families of rules live here, each with the public code's rule and the paper text's reading
(docs/fidelity.md says which preset uses which):

- grid: k x k cells, each a uniform parent (at K = 2 a Bernoulli(0.5) coin); `offset="batch"` (public code)
  stretches the k cells to size + size/k and crops back at ONE random offset per batch; `offset="sample"` uses
  cells of size/k with an offset drawn per sample.
- seg: `rule="range"` at K = 2 is the public code's: a contiguous range of segment labels [l, u) of the PARTNER's
  segmentation (never its last label) is filled with the first image's features; at K > 2 (an extension the paper
  names as future work) the first image's label order is cut into K contiguous ranges at K - 1 distinct random cut
  points, handed to the parents in a random order. `rule="bernoulli"` (the paper's text) gives each segment of the
  first image to a uniformly drawn parent.

Every rule draws its uniform numbers so that at K = 2 the parent-0 channel is the pair mask of the public code bit
for bit (a cell or segment goes to parent floor(K u), so parent 0 iff u < 1/2): one path serves every K.
"""

from __future__ import annotations

import operator
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
    """How masks are drawn: resolved once per generator run, stored in run.json, read back by the classifier stage.

    Its fields carry the names of the run config, the method options and the CLI options (--mask, --seg-mask, ...).
    """

    mask: str = "seg"  # seg or grid
    seg_mask: str = "range"  # the segment rule: range or bernoulli
    grid_offset: str = "batch"
    grid_k: int = 4
    mask_resize: str = "nearest"  # pixel mask -> feature size: nearest (public code) or majority over each cell
    parents: int = 2  # images per composition; 2 is the paper's pairs

    def __post_init__(self):
        check_choice("--mask", self.mask, MASK_KINDS)
        check_choice("--seg-mask", self.seg_mask, SEG_RULES)
        check_choice("--grid-offset", self.grid_offset, GRID_OFFSETS)
        check_choice("--mask-resize", self.mask_resize, MASK_RESIZES)
        if int(self.grid_k) < 1:
            raise ChimeraMixError(f"--grid-k {self.grid_k} is out of range: it needs at least 1 cell per side")
        check_parents(self.parents)

    @classmethod
    def from_config(cls, cfg) -> "MaskSpec":
        """From a config object or dict with the generator's mask fields (older runs lack some: their defaults then)."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        d = cls()
        return cls(get("mask") or d.mask, get("seg_mask") or d.seg_mask, get("grid_offset") or d.grid_offset,
                   int(get("grid_k") or d.grid_k), get("mask_resize") or d.mask_resize,
                   d.parents if get("parents") is None else get("parents"))

    def to_dict(self) -> dict:
        return asdict(self)

    def as_options(self) -> dict:
        """The mask rules as run-config and method options (the inverse of `from_config`, parents aside)."""
        return {k: v for k, v in asdict(self).items() if k != "parents"}

    @property
    def label(self) -> str:
        return "Seg" if self.mask == "seg" else "Grid"

    def sample(self, n: int, size: int, rng: torch.Generator, device, segs=None, num_segments: int | None = None) -> torch.Tensor:
        """One-hot assignments N x K x size x size (float) for a batch of compositions of K parents.

        segs: the (augmented) label maps of the K parents, in parent order, at any resolution (seg rules only;
        range at K = 2 reads the partner's, every other rule the first image's); they are reduced to `size` by
        `mask_resize`. num_segments: an upper bound on the labels (pass it in the hot loop to spare a device sync).
        """
        k = int(self.parents)
        if self.mask == "grid":
            if self.grid_offset == "batch":
                return one_hot(grid_parents_batch_offset(n, size, self.grid_k, k, rng, device), k)
            return one_hot(grid_parents(n, size, self.grid_k, k, rng, device), k)
        if segs is None or len(segs) < (2 if self.seg_mask == "range" and k == 2 else 1):
            raise ValueError("seg masks need the parents' label maps")
        if self.seg_mask == "range":
            assign = segment_range_parents(segs, k, rng, num_segments)
        else:
            assign = segment_parents(segs[0], k, rng, num_segments)
        return to_feature_size(one_hot(assign, k), size, self.mask_resize)


def check_parents(parents, spc: int | None = None) -> None:
    """Refuse a parent count below 2, or K > 2 above the images per class (K > 2 parents are distinct images)."""
    original = parents
    try:
        if isinstance(parents, bool):
            raise TypeError
        parents = operator.index(parents)
    except TypeError:
        parents = None
    if parents is None or parents < 2:
        raise ChimeraMixError(f"--parents must be a whole number of at least 2 (got {original!r}): a composition mixes at least two images")
    # pairs are drawn as the paper draws them, with replacement (an image may be its own partner), so spc 1 still
    # trains; only K > 2 needs K distinct images of a class
    if spc is not None and parents > 2 and parents > spc:
        raise ChimeraMixError(
            f"--parents {parents} is more than --spc {spc}: the {parents} parents of a composition are distinct images "
            f"of one class, so there can be at most {spc}"
        )


def one_hot(assign: torch.Tensor, k: int) -> torch.Tensor:
    """Parent indices N x 1 x H x W (or N x H x W) -> float one-hot N x K x H x W."""
    a = assign[:, 0] if assign.dim() == 4 else assign
    return F.one_hot(a.long(), k).permute(0, 3, 1, 2).float()


def _uniform_parent(u: torch.Tensor, k: int) -> torch.Tensor:
    # floor(k u): parent 0 iff u < 1/k, so at k = 2 parent 0 is exactly the public pair rule's coin `u < 0.5`
    return (u * k).long().clamp_(max=k - 1)


def grid_parents(n: int, size: int, grid_k: int, k: int, rng: torch.Generator, device) -> torch.Tensor:
    """Parent indices (long N x 1 x size x size) of a grid_k x grid_k grid of uniform cells, shifted per sample.

    A (grid_k+1) x (grid_k+1) grid is repeated to size + one cell, then cropped back to size at a random offset,
    so cell borders move from sample to sample.
    """
    cell = max(size // grid_k, 1)
    cells = _uniform_parent(torch.rand(n, grid_k + 1, grid_k + 1, generator=rng, device=device), k)
    big = cells.repeat_interleave(cell, 1).repeat_interleave(cell, 2)
    oy = torch.randint(0, cell, (n,), generator=rng, device=device)
    ox = torch.randint(0, cell, (n,), generator=rng, device=device)
    ar = torch.arange(size, device=device)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    return big[torch.arange(n, device=device)[:, None, None], rows, cols][:, None]


def grid_parents_batch_offset(n: int, size: int, grid_k: int, k: int, rng: torch.Generator, device) -> torch.Tensor:
    """The public code's grid: grid_k x grid_k uniform cells, nearest-stretched to size + size // grid_k, one crop
    per batch. Parent indices, long N x 1 x size x size.

    At 16 x 16 features and grid_k = 4 the cells are 5 pixels wide and every sample of the batch shares the crop
    offset (drawn in [0, size // grid_k - 1]).
    """
    pad = size // grid_k
    cells = _uniform_parent(torch.rand(n, 1, grid_k, grid_k, generator=rng, device=device), k).float()
    big = F.interpolate(cells, size=(size + pad, size + pad), mode="nearest")
    # The offset stays a device tensor (gathered by index, not sliced) so drawing it costs no host sync.
    oy, ox = torch.randint(0, max(pad, 1), (2,), generator=rng, device=device)
    ar = torch.arange(size, device=device)
    return big[:, :, (oy + ar)[:, None], (ox + ar)[None, :]].long()


def segment_parents(segments: torch.Tensor, k: int, rng: torch.Generator, num_segments: int | None = None) -> torch.Tensor:
    """Each segment to a uniformly drawn parent (at K = 2: each segment of the first image kept with p 0.5):
    long N x 1 x H x W of parent indices, a union of whole segments per parent."""
    n = segments.shape[0]
    if num_segments is None:
        num_segments = int(segments.max().item()) + 1 if segments.numel() else 1
    take = _uniform_parent(torch.rand(n, num_segments, generator=rng, device=segments.device), k)
    return torch.gather(take, 1, segments.reshape(n, -1).long()).reshape(n, 1, *segments.shape[1:])


def segment_range_parents(segs, k: int, rng: torch.Generator, num_segments: int | None = None) -> torch.Tensor:
    """The range rule: long N x 1 x H x W parent indices from the parents' label maps `segs` (parent order).

    K = 2, the public code's: parent 0 on a contiguous range of labels [l, u) of the PARTNER's map
    (`segment_range_masks`). K > 2: cut the first image's labels 0..L-1 into K contiguous ranges, one per parent.
    The K - 1 cut points are distinct labels in 1..L-1 (drawn without replacement), so every parent gets at
    least one segment when the map has K or more; with fewer the missing cuts sit at L (empty last ranges).
    The ranges go to the parents in a random order, so no parent always holds the first labels.
    """
    if k == 2:
        return 1 - segment_range_masks(segs[1], rng).long()
    segments = segs[0]
    n, dev = segments.shape[0], segments.device
    flat = segments.reshape(n, -1).long()
    if num_segments is None:
        num_segments = int(flat.max().item()) + 1 if flat.numel() else 1
    labels = flat.amax(1) + 1  # L per map
    slots = max(num_segments - 1, k - 1, 1)
    cand = torch.arange(1, slots + 1, device=dev)  # candidate cut labels 1..slots
    keys = torch.rand(n, slots, generator=rng, device=dev)
    keys = torch.where(cand[None] < labels[:, None], keys, torch.full_like(keys, 2.0))  # only 1..L-1 are real cuts
    pick = keys.argsort(1)[:, : k - 1]
    cuts = torch.where(torch.gather(keys, 1, pick) < 2, cand[pick], labels[:, None]).sort(1).values
    rank = (flat[:, :, None] >= cuts[:, None, :]).sum(2)  # which range each pixel's label falls in: 0..K-1
    order = torch.rand(n, k, generator=rng, device=dev).argsort(1)
    return torch.gather(order, 1, rank).reshape(n, 1, *segments.shape[1:])


def segment_range_masks(segments: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """The public code's segment rule: 1 on a contiguous range of labels [l, u) of each map, 0 elsewhere.

    With K = max label + 1 of the map: l uniform in [0, max(1, K-1) - 1], u uniform in
    [l + 1, max(l + 2, K) - 1], so the last label is never taken when K >= 2.
    Vectorised over the batch (the public code loops per sample). float {0, 1}, N x 1 x H x W.
    """
    n = segments.shape[0]
    flat = segments.reshape(n, -1).long()
    k = flat.amax(1) + 1
    lo_count = torch.clamp(k - 1, min=1)
    lo = (torch.rand(n, generator=rng, device=segments.device) * lo_count).long().minimum(lo_count - 1)
    up_count = torch.clamp(torch.maximum(lo + 2, k) - (lo + 1), min=1)
    up = lo + 1 + (torch.rand(n, generator=rng, device=segments.device) * up_count).long().minimum(up_count - 1)
    take = (flat >= lo[:, None]) & (flat < up[:, None])
    return take.float().reshape(n, 1, *segments.shape[1:])


def to_feature_size(weights: torch.Tensor, size: int, mode: str = "majority") -> torch.Tensor:
    """Reduce (or enlarge) one-hot N x K x H x W to size x size.

    nearest: F.interpolate's nearest (one pixel per cell, as the public code); majority: each cell to the parent
    with most of its pixels (ties to the lower index: at K = 2 a cell goes to the first image at half its pixels).
    """
    if weights.shape[-1] == size:
        return weights
    if mode == "nearest" or size > weights.shape[-1]:
        return F.interpolate(weights, size=(size, size), mode="nearest")
    return one_hot(F.adaptive_avg_pool2d(weights, size).argmax(1), weights.shape[1])


def assignment_picture(weights: torch.Tensor, size: int) -> torch.Tensor:
    """One-hot N x K x h x w as a grey picture in [-1, 1] at size x size: the first image white, the last parent
    black, parent j at grey level 1 - 2 j / (K - 1) (a pair's picture is its mask, white where x1 is kept)."""
    k = weights.shape[1]
    grey = 1 - 2 * weights.argmax(1, keepdim=True).float() / max(k - 1, 1)
    return F.interpolate(grey, size=(size, size), mode="nearest")


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


def mask_statistics(masks: torch.Tensor) -> dict:
    """Mean connected regions of 1s (4-connectivity) and mean share of 1s of N x 1 x H x W {0, 1} masks."""
    from skimage.measure import label

    m = masks[:, 0].cpu().numpy() > 0.5
    regions = [int(label(x, connectivity=1).max()) for x in m]
    return {"regions": float(np.mean(regions)), "area_first": float(m.mean()), "n": int(len(m))}
