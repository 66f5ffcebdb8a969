"""ChimeraMix in the classifier: with probability p the batch becomes generated compositions."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from ..augment import CropFlip, normalize, resize
from ..config import P_GENERATED
from ..masks import MaskSpec, check_choice
from .base import Method, StepContext
from .common import check_probability

AUG_ORDERS = ("parents", "composition")


def replaced_at(seed: int, step: int, p: float) -> bool:
    """Whether batch `step` is replaced: a pure function of (seed, step), so resumed runs agree, and host-side (no device sync)."""
    return bool(np.random.default_rng([seed, step, 77]).random() < p)


@torch.no_grad()
def compose(G: torch.nn.Module, xs, weights: torch.Tensor, work_size: int, autocast=nullcontext) -> torch.Tensor:
    """Compositions of K parents (a list of batches) under one-hot weights, made at the generator's resolution and
    returned (fp32) at the batch's."""
    size = xs[0].shape[-1]
    with autocast():  # only the frozen generator's convolutions run in reduced precision
        out = G([resize(x, work_size) for x in xs], weights)
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
        self.spec = MaskSpec.from_config(o)
        if o["parents"] == 2:
            # Pairs keep the options (and so the run.json) they had before K parents existed: finished runs are reused.
            del o["parents"]
        self.p = check_probability("p_generated", o["p_generated"], self.name)
        check_choice("chimeramix option aug_order", o["aug_order"], AUG_ORDERS)
        self.label = f"ChimeraMix+{self.spec.label}"

    @property
    def augments_parents(self) -> bool:
        return self.options["aug_order"] == "parents"

    def apply(self, x, y, ctx: StepContext, augment: Method | None = None):
        """augment: a policy (AutoAugment, TrivialAugment) applied to each parent before composing, as the public
        code does (and to the real batch when it is not replaced)."""
        replaced = replaced_at(self.seed, ctx.step, self.p)
        ctx.extra["generated"] = 1.0 if replaced else 0.0
        if not replaced:
            return augment.apply(x, y, ctx) if augment is not None else (x, y)
        data, rng = ctx.data, ctx.rng
        # The batch's images and K - 1 same-class partners each (a pair's partner with replacement, as the paper)
        partners = data.parent_indices(ctx.idx, self.spec.parents, rng)
        crops = [CropFlip.sample(len(ctx.idx), x.shape[-1], rng, x.device) for _ in partners]
        xs = [x, *(normalize(p.apply(data.images[i])) for p, i in zip(crops, partners))]
        segs = None
        if self.spec.mask == "seg":
            segs = [ctx.crop.apply(data.segments[ctx.idx]), *(p.apply(data.segments[i]) for p, i in zip(crops, partners))]
        w = self.spec.sample(len(ctx.idx), self.work_size // 4, rng, x.device, segs, data.num_segments)
        if augment is not None:
            xs = [augment.apply(xi, y, ctx)[0] for xi in xs]
        return compose(ctx.generator, xs, w, self.work_size, ctx.autocast), y
