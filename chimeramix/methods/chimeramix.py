"""ChimeraMix in the classifier: with probability p the batch becomes generated compositions."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from .. import masks as M
from ..augment import CropFlip, normalize, resize
from ..config import P_GENERATED
from ..masks import check_choice
from .base import Method, StepContext
from .common import check_probability

AUG_ORDERS = ("parents", "composition")


def replaced_at(seed: int, step: int, p: float) -> bool:
    """Whether batch `step` is replaced: a pure function of (seed, step), so resumed runs agree, and host-side (no device sync)."""
    return bool(np.random.default_rng([seed, step, 77]).random() < p)


@torch.no_grad()
def compose(G: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, mask: torch.Tensor, work_size: int,
            autocast=nullcontext) -> torch.Tensor:
    """Compositions at the generator's resolution, returned (fp32) at the batch's resolution."""
    size = x1.shape[-1]
    with autocast():  # only the frozen generator's convolutions run in reduced precision
        out = G(resize(x1, work_size), resize(x2, work_size), mask)
    return resize(out.float(), size).clamp_(-1, 1)


@torch.no_grad()
def compose_parents(G: torch.nn.Module, xs, weights: torch.Tensor, work_size: int, autocast=nullcontext) -> torch.Tensor:
    """`compose` for K parents (a list of batches) under one-hot K-way weights."""
    size = xs[0].shape[-1]
    with autocast():
        out = G.forward_parents([resize(x, work_size) for x in xs], weights)
    return resize(out.float(), size).clamp_(-1, 1)


class ChimeraMix(Method):
    name = "chimeramix"
    label = "ChimeraMix"
    paper = "Reinders, Schubert, Rosenhahn: ChimeraMix, IJCAI 2022"
    # Mask settings default to the generator run's (the classifier stage reads them from its run.json).
    defaults = {"p_generated": P_GENERATED, "mask": "seg", "seg_mask": "range", "grid_offset": "batch",
                "mask_resize": "nearest", "grid_k": 4, "aug_order": "parents", "parents": 2}
    context = ("seed", "work_size")  # the run's seed (which batches are replaced); the generator's working resolution
    needs_generator = True
    stage = "source"

    def __init__(self, *, seed: int = 0, work_size: int = 64, **options):
        super().__init__(**options)
        self.seed, self.work_size = int(seed), int(work_size)
        o = self.options
        self.spec = M.MaskSpec.from_config(o)
        if o["parents"] == 2:
            # Pairs keep the options (and so the run.json) they had before K parents existed: finished runs are reused.
            del o["parents"]
        self.p = check_probability("p_generated", o["p_generated"], self.name)
        check_choice("chimeramix option aug_order", o["aug_order"], AUG_ORDERS)
        self.label = f"ChimeraMix+{self.spec.label}"

    def apply(self, x, y, ctx: StepContext, augment: Method | None = None):
        """augment: a policy (AutoAugment, TrivialAugment) applied to each parent before composing, as the public
        code does (and to the real batch when it is not replaced)."""
        replaced = replaced_at(self.seed, ctx.step, self.p)
        ctx.extra["generated"] = 1.0 if replaced else 0.0
        if not replaced:
            return augment.apply(x, y, ctx) if augment is not None else (x, y)
        data, rng = ctx.data, ctx.rng
        if self.spec.parents != 2:
            return self._apply_parents(x, y, ctx, augment), y
        i2 = data.partners(ctx.idx, rng)
        p2 = CropFlip.sample(len(i2), x.shape[-1], rng, x.device)
        x2 = normalize(p2.apply(data.images[i2]))
        seg1 = seg2 = None
        if self.spec.kind == "seg":
            seg1, seg2 = ctx.crop.apply(data.segments[ctx.idx]), p2.apply(data.segments[i2])
        m = self.spec.sample(len(i2), self.work_size // 4, rng, x.device, seg1, seg2, data.num_segments)
        if augment is not None:
            x, x2 = augment.apply(x, y, ctx)[0], augment.apply(x2, y, ctx)[0]
        return compose(ctx.generator, x, x2, m, self.work_size, ctx.autocast), y

    def _apply_parents(self, x, y, ctx: StepContext, augment: Method | None):
        """K parents: the batch's images and K - 1 distinct same-class partners each, composed by K-way masks."""
        data, rng = ctx.data, ctx.rng
        partners = data.distinct_partners(ctx.idx, self.spec.parents - 1, rng)
        crops = [CropFlip.sample(len(ctx.idx), x.shape[-1], rng, x.device) for _ in partners]
        xs = [x, *(normalize(p.apply(data.images[i])) for p, i in zip(crops, partners))]
        seg1 = ctx.crop.apply(data.segments[ctx.idx]) if self.spec.kind == "seg" else None
        w = self.spec.sample_parents(len(ctx.idx), self.work_size // 4, rng, x.device, seg1, data.num_segments)
        if augment is not None:
            xs = [augment.apply(xi, y, ctx)[0] for xi in xs]
        return compose_parents(ctx.generator, xs, w, self.work_size, ctx.autocast)
