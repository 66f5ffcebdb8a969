"""ChimeraMix in the classifier: with probability p the batch becomes generated compositions."""

from __future__ import annotations

import numpy as np
import torch

from .. import masks as M
from ..augment import CropFlip, normalize, resize
from .base import Method, StepContext


def replaced_at(seed: int, step: int, p: float) -> bool:
    """Whether batch `step` is replaced: a pure function of (seed, step), so resumed runs agree, and host-side (no device sync)."""
    return bool(np.random.default_rng([seed, step, 77]).random() < p)


@torch.no_grad()
def compose(G: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, mask: torch.Tensor, work_size: int) -> torch.Tensor:
    """Compositions at the generator's resolution, returned at the batch's resolution."""
    size = x1.shape[-1]
    out = G(resize(x1, work_size), resize(x2, work_size), mask)
    return resize(out, size).clamp_(-1, 1)


class ChimeraMix(Method):
    name = "chimeramix"
    label = "ChimeraMix"
    paper = "Reinders, Schubert, Rosenhahn: ChimeraMix, IJCAI 2022"
    defaults = {"p_generated": 0.5, "mask": "seg", "grid_k": 4, "work_size": 64, "seed": 0}
    needs_generator = True

    def __init__(self, **options):
        super().__init__(**options)
        self.label = f"ChimeraMix+{'Seg' if self.options['mask'] == 'seg' else 'Grid'}"

    def apply(self, x, y, ctx: StepContext):
        o = self.options
        replaced = replaced_at(o["seed"], ctx.step, o["p_generated"])
        ctx.extra["generated"] = 1.0 if replaced else 0.0
        if not replaced:
            return x, y
        data, gen = ctx.data, ctx.gen
        i2 = data.partners(ctx.idx, gen)
        p2 = CropFlip.sample(len(i2), x.shape[-1], gen, x.device)
        x2 = normalize(p2.apply(data.images[i2]))
        seg = ctx.crop.apply(data.segments[ctx.idx]) if o["mask"] == "seg" else None
        m = M.sample_masks(o["mask"], len(i2), o["work_size"] // 4, gen, x.device, seg, o["grid_k"], data.num_segments)
        return compose(ctx.generator, x, x2, m, o["work_size"]), y
