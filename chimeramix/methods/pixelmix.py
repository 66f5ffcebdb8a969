"""GridMix and SegMix: ChimeraMix's masks applied straight to the pixels of same-class pairs (no generator).

The paper's ablation (its Table 3; the public code's `mix_direct`) swaps the
generator for pixel mixing and keeps everything else: the partner is a random
image of the same class (with replacement, itself included), crop + flip
augmented like the batch; the mask follows ChimeraMix's rules (grid: drawn at
the generator's working resolution, 64 px for 32 px data, so cells are 10 px on
32 px images; seg: the partner's Felzenszwalb segments of the classifier's
view, a contiguous label range, or each own segment with p 0.5); labels are
unchanged (same class); and, as ChimeraMix does, a batch is replaced with
probability p_generated, decided by the same pure function of (seed, step)
(`replaced_at`), so the two are compared like for like.

The public code resamples both images to 64 px, mixes, and resamples back; here
the mask is brought to the image's resolution instead (nearest), which gives
the same regions without blurring the pixels twice.
"""

from __future__ import annotations

from ..masks import MaskSpec, to_feature_size
from ..augment import CropFlip, normalize
from ..config import P_GENERATED
from ..errors import ChimeraMixError
from .base import Method, StepContext
from .chimeramix import replaced_at
from .common import check_number, check_probability


class _PixelMix(Method):
    defaults = {"p_generated": P_GENERATED}
    context = ("seed",)  # the run's seed: which batches are replaced, as ChimeraMix decides it
    stage = "source"

    def __init__(self, *, seed: int = 0, **options):
        super().__init__(**options)
        self.seed = int(seed)
        self.p = check_probability("p_generated", self.options["p_generated"], self.name)

    def masks(self, x, ctx: StepContext, i2, crop2):
        """Masks at the batch's resolution; i2 / crop2: the partners and their crop (segment maps follow it)."""
        raise NotImplementedError

    def apply(self, x, y, ctx: StepContext):
        replaced = replaced_at(self.seed, ctx.step, self.p)
        ctx.extra["mixed"] = 1.0 if replaced else 0.0
        if not replaced:
            return x, y
        i2 = ctx.data.partners(ctx.idx, ctx.rng)
        crop2 = CropFlip.sample(len(i2), x.shape[-1], ctx.rng, x.device)
        x2 = normalize(crop2.apply(ctx.data.images[i2]))
        m = self.masks(x, ctx, i2, crop2).to(x.dtype)
        return m * x + (1 - m) * x2, y


class GridMix(_PixelMix):
    """Pixels of x1 where a random k x k grid cell is 1, of its same-class partner x2 elsewhere."""

    name = "gridmix"
    label = "GridMix"
    paper = "Reinders, Schubert, Rosenhahn: ChimeraMix, IJCAI 2022 (ablation, Table 3: grid masks on pixels, no generator)"
    defaults = {"grid_k": 4, "grid_offset": "batch", "work_size": 64, **_PixelMix.defaults}

    def __init__(self, **options):
        super().__init__(**options)
        self.k = check_number("grid_k", self.options["grid_k"], self.name, at_least=1, integer=True,
                              why=" (grid cells per side)")
        self.work = check_number("work_size", self.options["work_size"], self.name, at_least=1, integer=True)
        self.spec = MaskSpec("grid", grid_offset=self.options["grid_offset"], grid_k=self.k)
        if self.spec.grid_offset != "batch":
            self.label += f" ({self.spec.grid_offset} offset)"

    def masks(self, x, ctx, i2, crop2):
        m = self.spec.sample(x.shape[0], self.work, ctx.rng, x.device)[:, :1]  # the pair's mask: 1 keeps x1
        return to_feature_size(m, x.shape[-1], "nearest")


class SegMix(_PixelMix):
    """Pixels of x1 on a mask drawn from Felzenszwalb segments (ChimeraMix's rule), of its same-class partner elsewhere.

    The segment maps are computed once per training image by the classifier
    (seg_scale, seg_min_size: ChimeraMix's settings for the image size) and
    cropped / flipped with the batch, so masks are unions of whole segments.
    """

    name = "segmix"
    label = "SegMix"
    paper = "Reinders, Schubert, Rosenhahn: ChimeraMix, IJCAI 2022 (ablation, Table 3: segment masks on pixels, no generator)"
    defaults = {"seg_mask": "range", "work_size": 64, "seg_scale": 60, "seg_min_size": 60, **_PixelMix.defaults}
    needs_segments = True

    def __init__(self, **options):
        super().__init__(**options)
        check_number("work_size", self.options["work_size"], self.name, at_least=1, integer=True)
        check_number("seg_scale", self.options["seg_scale"], self.name, above=0)
        check_number("seg_min_size", self.options["seg_min_size"], self.name, at_least=1, integer=True)
        self.spec = MaskSpec("seg", seg_mask=self.options["seg_mask"])
        if self.spec.seg_mask != "range":
            self.label += f" ({self.spec.seg_mask} segments)"

    @property
    def recorded_options(self) -> dict:
        return {"needs_segments": True, **super().recorded_options}  # as SegMix runs have always recorded it

    def masks(self, x, ctx, i2, crop2):
        data = ctx.data
        if getattr(data, "segments", None) is None:
            raise ChimeraMixError("segmix needs the segment maps of the training images: build DeviceData with segments "
                                  "(fit-classifier does this for a method with needs_segments)")
        seg1, seg2 = ctx.crop.apply(data.segments[ctx.idx]), crop2.apply(data.segments[i2])
        return self.spec.sample(x.shape[0], x.shape[-1], ctx.rng, x.device, [seg1, seg2], data.num_segments)[:, :1]
