"""Mixing baselines: MixUp, CutMix, zeta-mixup and SamplePairing, batched on the device.

None of them fits a kornia or torchvision class: kornia.augmentation.RandomMixUpV2
and RandomCutMixV2 draw from torch's global RNG (not the step's rng, so a
resumed run would not repeat its numbers) and return their own label format;
torchvision.transforms.v2.MixUp/CutMix draw one lambda from torch's global
Gamma sampler too. The code below is short and draws everything from ctx.rng.
"""

from __future__ import annotations

import torch

from ..errors import ChimeraMixError
from .base import Method, StepContext
from ..masks import check_choice
from .common import augmented_images, box_masks, centred_boxes, check_number, check_probability, sample_beta, soft_targets


class MixUp(Method):
    """x = lam x_i + (1 - lam) x_j, target likewise, with lam ~ Beta(alpha, alpha) and j a random permutation.

    As in Zhang et al.'s code, one lam is drawn per batch (every pair in the
    batch shares it; the partners are per sample). The soft cross-entropy
    against the mixed target equals lam CE(y_i) + (1 - lam) CE(y_j), the
    paper's mixed loss of both labels.
    """

    name = "mixup"
    label = "MixUp"
    paper = "Zhang, Cisse, Dauphin, Lopez-Paz: mixup: Beyond Empirical Risk Minimization, ICLR 2018"
    defaults = {"alpha": 1.0}
    stage = "label"

    def __init__(self, **options):
        super().__init__(**options)
        self.alpha = check_number("alpha", self.options["alpha"], self.name, above=0,
                                  why=" (the Beta(alpha, alpha) parameter)")

    def apply(self, x, y, ctx: StepContext):
        n = x.shape[0]
        lam = sample_beta((1,), self.alpha, self.alpha, ctx.rng, x.device)
        perm = torch.randperm(n, generator=ctx.rng, device=x.device)
        t = soft_targets(y, ctx.num_classes)
        xm = lam.view(1, 1, 1, 1) * x + (1 - lam.view(1, 1, 1, 1)) * x[perm]
        tm = lam.view(1, 1) * t + (1 - lam.view(1, 1)) * t[perm]
        return xm, tm


class CutMix(Method):
    """Paste a box of a partner image; the label weight is the share of pixels each image keeps.

    lam ~ Beta(alpha, alpha) once per batch as in Yun et al.'s code; the box has
    sides W sqrt(1 - lam) and H sqrt(1 - lam) and a centre uniform over the image,
    drawn per sample (their code uses one box for the whole batch; per-sample
    centres cost nothing here and leave each sample's distribution unchanged).
    The box is clipped at the borders and lam is corrected to the pasted area
    per sample: lam_i = 1 - area_i / (H W). With probability p (0.5, their
    CIFAR setting) a batch is mixed at all; the coin is drawn on the device.
    """

    name = "cutmix"
    label = "CutMix"
    paper = "Yun, Han, Oh, Chun, Choe, Yoo: CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features, ICCV 2019"
    defaults = {"alpha": 1.0, "p": 0.5}
    stage = "label"

    def __init__(self, **options):
        super().__init__(**options)
        self.alpha = check_number("alpha", self.options["alpha"], self.name, above=0,
                                  why=" (the Beta(alpha, alpha) parameter)")
        self.p = check_probability("p", self.options["p"], self.name)

    def apply(self, x, y, ctx: StepContext):
        n, _, h, w = x.shape
        dev, rng = x.device, ctx.rng
        lam = sample_beta((1,), self.alpha, self.alpha, rng, dev)
        on = torch.rand(1, generator=rng, device=dev) < self.p
        perm = torch.randperm(n, generator=rng, device=dev)
        cut = torch.sqrt(1 - lam)
        bh, bw = (h * cut).long().expand(n), (w * cut).long().expand(n)  # int(), as their code
        cy = torch.randint(0, h, (n,), generator=rng, device=dev)
        cx = torch.randint(0, w, (n,), generator=rng, device=dev)
        box = box_masks(*centred_boxes(cy, cx, bh, bw, h, w), h, w) & on.view(1, 1, 1, 1)
        keep = 1 - box.flatten(1).float().mean(1, keepdim=True)  # lam corrected to the clipped area
        t = soft_targets(y, ctx.num_classes)
        return torch.where(box, x[perm], x), keep * t + (1 - keep) * t[perm]


ZETA_GAMMA_MIN = 1.72865  # zeta(gamma) = 2 here: the top weight 1 / zeta(gamma) equals the sum of all the others


def zeta_weights(n: int, k: int, gamma: float, rng: torch.Generator, device) -> torch.Tensor:
    """Mixing weights, n outputs x n inputs: row r gives input i the weight s_ri^-gamma / sum_{j<=k} j^-gamma.

    s_r is a random permutation of 1..n per output row (ranks beyond k get
    weight 0, so each output mixes k inputs). Rows sum to 1.
    """
    base = torch.arange(1, n + 1, device=device, dtype=torch.float32).pow(-gamma)
    base[k:] = 0
    base = base / base.sum()
    ranks = torch.argsort(torch.rand(n, n, generator=rng, device=device), dim=1)  # a random permutation per row
    return base[ranks]


class ZetaMixup(Method):
    """zeta-mixup: each output is a convex combination of N batch samples with weights ~ rank^-gamma.

    Per output sample a random permutation s ranks the batch; sample i gets the
    weight s_i^-gamma / sum_j j^-gamma, and the soft label uses the same
    weights. gamma >= 1.72865 makes the top-ranked sample outweigh all the
    others together (zeta(gamma) <= 2), so every output has a dominant sample.
    n: how many samples each output mixes (None: the whole batch).
    """

    name = "zeta-mixup"
    label = "ζ-mixup"
    paper = "Abhishek, Brown, Hamarneh: Multi-Sample zeta-mixup: Richer, More Realistic Synthetic Samples from a p-Series Interpolant, 2022"
    defaults = {"gamma": 2.8, "n": None}
    stage = "label"

    def __init__(self, **options):
        super().__init__(**options)
        g = self.options["gamma"]
        self.gamma = check_number("gamma", g, self.name)
        if self.gamma < ZETA_GAMMA_MIN:
            raise ChimeraMixError(
                f"zeta-mixup: gamma must be >= {ZETA_GAMMA_MIN} (got {g!r}): below it the top-ranked sample's weight "
                "1/zeta(gamma) is less than the other weights together, so no single sample dominates the mixture"
            )
        n = self.options["n"]
        self.n = None if n is None else check_number("n", n, self.name, at_least=1, integer=True)

    def apply(self, x, y, ctx: StepContext):
        n = x.shape[0]
        k = n if self.n is None else min(self.n, n)
        wts = zeta_weights(n, k, self.gamma, ctx.rng, x.device)
        xm = torch.einsum("ri,ichw->rchw", wts, x)
        return xm, wts @ soft_targets(y, ctx.num_classes)


# SamplePairing's schedule (Inoue 2018, and the write-up's face-photo experiment): off for a start share of the run,
# then cycles of `on` epochs paired and `off` epochs not, and off again for a fine-tuning share at the end.
PAIRING_SCHEDULE = {"start": 0.1, "finetune": 0.1, "on": 8, "off": 2, "cycle": "epochs"}
PAIRING_CYCLES = ("epochs", "run")


def _share(total: int, fraction: float) -> int:
    # the epsilon keeps 0.1 x total at total // 10 where the float product lands a hair below the whole number
    return int(total * fraction + 1e-9)


def pairing_on(step: int, total_steps: int, steps_per_epoch: int, start: float = 0.1, finetune: float = 0.1,
               on: float = 8, off: float = 2, cycle: str = "epochs") -> bool:
    """SamplePairing's schedule as a pure function of the step.

    Off for the first `start` share of the steps and the last `finetune` share; in between, cycles of `on` then
    `off` epochs (cycle 'epochs', counted from the end of the start share), or of `on` and `off` shares of the
    run (cycle 'run': a step budget of a few epochs still sees whole cycles). The defaults are the paper's:
    a tenth, 8 on and 2 off, a tenth. Runs shorter than an epoch cycle simply see part of one cycle.
    """
    begin = _share(total_steps, start)
    if step < begin or step >= total_steps - _share(total_steps, finetune):
        return False
    if cycle == "run":
        on_steps, off_steps = max(1, _share(total_steps, on)), _share(total_steps, off)
        return (step - begin) % (on_steps + off_steps) < on_steps
    epoch = (step - begin) // max(steps_per_epoch, 1)
    return epoch % int(on + off) < on


class SamplePairing(Method):
    """Average each image with another random training image (any class), keeping the first label.

    The partner is drawn uniformly from the whole training subset and crop +
    flip augmented like the batch. While the schedule is on, a share pairing_p
    of the images (per-sample coin) is paired. ctx.extra['paired'] logs the
    expected share (pairing_p while on, 0 while off): counting the drawn coins
    would need a device-to-host sync every step.
    """

    name = "samplepairing"
    label = "SamplePairing"
    paper = "Inoue: Data Augmentation by Pairing Samples for Images Classification, arXiv 1801.02929, 2018"
    defaults = {"pairing_p": 1.0, **PAIRING_SCHEDULE}
    stage = "source"

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        self.p = check_probability("pairing_p", o["pairing_p"], self.name)
        for k in ("start", "finetune"):
            o[k] = check_number(k, o[k], self.name, at_least=0, why=" (a share of the run's steps)")
        if o["start"] + o["finetune"] >= 1:
            raise ChimeraMixError(f"{self.name}: start + finetune must leave part of the run to pair, got "
                                  f"{o['start']:g} + {o['finetune']:g}")
        check_choice(f"{self.name} option cycle", o["cycle"], PAIRING_CYCLES)
        epochs = o["cycle"] == "epochs"
        unit = " (epochs)" if epochs else " (a share of the run)"
        o["on"] = check_number("on", o["on"], self.name, above=0, integer=epochs, why=unit)
        o["off"] = check_number("off", o["off"], self.name, at_least=0, integer=epochs, why=unit)
        self.schedule = {k: o[k] for k in PAIRING_SCHEDULE}

    @property
    def recorded_options(self) -> dict:
        # the schedule's defaults are not recorded: runs from before it was an option keep the config they had
        rec = super().recorded_options
        return {k: v for k, v in rec.items() if k not in PAIRING_SCHEDULE or v != PAIRING_SCHEDULE[k]}

    def apply(self, x, y, ctx: StepContext):
        on = pairing_on(ctx.step, ctx.total_steps, ctx.steps_per_epoch, **self.schedule)
        ctx.extra["paired"] = self.p if on else 0.0
        if not on or self.p == 0.0:
            return x, y
        n, rng, data = x.shape[0], ctx.rng, ctx.data
        j = torch.randint(0, data.n, (n,), generator=rng, device=x.device)
        x2 = augmented_images(data, j, x.shape[-1], rng)
        pair = (torch.rand(n, generator=rng, device=x.device) < self.p).view(n, 1, 1, 1)
        return torch.where(pair, 0.5 * (x + x2), x), y
