"""GridMix and SegMix: ChimeraMix's masks applied straight to the pixels of same-class pairs (no generator).

The paper's ablation (its Table 3) swaps the generator for pixel mixing and
keeps everything else: the partner is a random image of the same class (with
replacement, itself included), crop + flip augmented like the batch; the mask
is the grid (k x k Bernoulli(0.5) cells with a random offset) or the union of
Felzenszwalb segments each taken with probability 0.5, here at the image's own
resolution; labels are unchanged (same class); and, as ChimeraMix does, a
batch is replaced with probability p_generated, decided by the same pure
function of (seed, step) (`replaced_at`), so the two are compared like for like.
"""

from __future__ import annotations

from .. import masks as M
from ..errors import ChimeraMixError
from .base import Method, StepContext
from .chimeramix import replaced_at
from .common import augmented_images, check_number, check_probability


class _PixelMix(Method):
    defaults = {"p_generated": 0.5, "seed": 0}

    def __init__(self, **options):
        super().__init__(**options)
        self.p = check_probability("p_generated", self.options["p_generated"], self.name)

    def masks(self, x, ctx: StepContext):
        raise NotImplementedError

    def apply(self, x, y, ctx: StepContext):
        replaced = replaced_at(int(self.options["seed"]), ctx.step, self.p)
        ctx.extra["mixed"] = 1.0 if replaced else 0.0
        if not replaced:
            return x, y
        x2 = augmented_images(ctx.data, ctx.data.partners(ctx.idx, ctx.gen), x.shape[-1], ctx.gen)
        m = self.masks(x, ctx).to(x.dtype)
        return m * x + (1 - m) * x2, y


class GridMix(_PixelMix):
    """Pixels of x1 where a random k x k grid cell is 1, of its same-class partner x2 elsewhere."""

    name = "gridmix"
    label = "GridMix"
    paper = "Reinders, Schubert, Rosenhahn: ChimeraMix, IJCAI 2022 (ablation, Table 3: grid masks on pixels, no generator)"
    defaults = {"grid_k": 4, **_PixelMix.defaults}

    def __init__(self, **options):
        super().__init__(**options)
        self.k = check_number("grid_k", self.options["grid_k"], self.name, at_least=1, integer=True,
                              why=" (grid cells per side)")

    def masks(self, x, ctx):
        return M.grid_masks(x.shape[0], x.shape[-1], self.k, ctx.gen, x.device)


class SegMix(_PixelMix):
    """Pixels of x1 on a random half of its Felzenszwalb segments, of its same-class partner x2 elsewhere.

    The segment maps are computed once per training image by the classifier
    (work_size, seg_scale, seg_min_size: ChimeraMix's 32x32 settings) and
    cropped / flipped with the batch, so masks are unions of whole segments.
    """

    name = "segmix"
    label = "SegMix"
    paper = "Reinders, Schubert, Rosenhahn: ChimeraMix, IJCAI 2022 (ablation, Table 3: segment masks on pixels, no generator)"
    defaults = {"needs_segments": True, "work_size": 64, "seg_scale": 60, "seg_min_size": 60, **_PixelMix.defaults}

    def __init__(self, **options):
        super().__init__(**options)
        check_number("work_size", self.options["work_size"], self.name, at_least=1, integer=True)
        check_number("seg_scale", self.options["seg_scale"], self.name, above=0)
        check_number("seg_min_size", self.options["seg_min_size"], self.name, at_least=1, integer=True)

    def masks(self, x, ctx):
        data = ctx.data
        if getattr(data, "segments", None) is None:
            raise ChimeraMixError("segmix needs the segment maps of the training images: build DeviceData with segments "
                                  "(fit-classifier does this when the method's options say needs_segments)")
        seg = ctx.crop.apply(data.segments[ctx.idx])
        return M.segment_pixel_masks(seg, ctx.gen, data.num_segments)
