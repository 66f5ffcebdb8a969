"""What a training method is: a batched transform of (images, labels) and the loss that goes with it."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import soft_cross_entropy


@dataclass
class StepContext:
    """What a method may look at while transforming one batch (all tensors on the device)."""

    step: int
    total_steps: int
    num_classes: int
    rng: torch.Generator
    idx: torch.Tensor | None = None  # indices of the batch in the training subset
    crop: object | None = None  # the CropFlip applied to the batch (segment maps follow it)
    data: object | None = None  # the DeviceData
    generator: torch.nn.Module | None = None  # frozen ChimeraMix generator, if any
    steps_per_epoch: int = 1  # so epoch-based schedules (SamplePairing) can be expressed in steps
    dataset: str = ""  # source name (e.g. 'cifair10'), for per-dataset defaults such as Cutout's size
    extra: dict = field(default_factory=dict)  # per-step facts for the metrics (e.g. generated: 1.0)
    # The trainer's reduced-precision context: methods run in fp32 and enter it only for network forwards.
    autocast: Callable = nullcontext


# Where a method acts in a chain, in the order a chain runs: what the batch is made of (real images, or ChimeraMix
# compositions, GridMix / SegMix pixel mixes, SamplePairing averages), a per-image pixel policy, a label mixer over
# the whole batch (soft labels from here on), the loss.
STAGES = ("source", "pixel", "label", "loss")
STAGE_TITLES = {"source": "batch source", "pixel": "pixel policy", "label": "label mixer", "loss": "loss"}


class Method:
    """Standard training: crop + flip (already applied), cross-entropy on hard labels."""

    name = "none"
    stage: str | None = None  # one of STAGES; the baseline has none (it chains with nothing)
    label = "Baseline"
    paper = "standard training with random crop and horizontal flip"
    defaults: dict = {}  # the user's options (-o KEY=VALUE) and their defaults
    context: tuple[str, ...] = ()  # what the run supplies as constructor arguments (methods.RUN_CONTEXT), never -o
    needs_generator = False
    needs_segments = False  # whether the trainer must compute segment maps of the training images for it

    def __init__(self, **options):
        self.options = {**self.defaults, **options}

    @property
    def augments_parents(self) -> bool:
        """Whether this batch source applies a chain's pixel policies to its own inputs (handed to `apply` as
        `augment=`) instead of having them run over the batch it returns. ChimeraMix does, as the public code."""
        return False

    @property
    def recorded_options(self) -> dict:
        """What run.json records as the method's options: its options and its run context (as runs always recorded them)."""
        return {**self.options, **{k: getattr(self, k) for k in self.context}}

    def apply(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext):
        """x: float N x 3 x H x W in [-1, 1]; returns (x, target) where target is y or N x K soft labels."""
        return x, y

    def modules(self, num_classes: int, device) -> dict[str, torch.nn.Module]:
        """Extra trainable modules the method's loss needs (e.g. a head), trained and checkpointed with the network."""
        return {}

    def loss(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = model(x).float()  # a bf16 forward's logits; the loss (and soft labels) stay fp32
        if target.dtype == torch.long:
            return F.cross_entropy(logits, target)
        return soft_cross_entropy(logits, target)


class Chain(Method):
    """Methods run in stage order (source, pixel policies, label mixers, loss; methods.MethodSpec checks the order).

    A generator source (ChimeraMix) with its option aug_order = 'parents' (the default, the public code's order)
    is handed the pixel policies, which it applies to every parent before composing (and to the real batch when
    it is not replaced); the label mixers then see the batch as the source left it, compositions included. The
    loss is the loss stage's, else cross-entropy on the (possibly soft) targets.
    """

    def __init__(self, parts: list[Method]):
        super().__init__()
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.label = " + ".join(p.label for p in parts)
        self.needs_generator = any(p.needs_generator for p in parts)
        self.needs_segments = any(p.needs_segments for p in parts)
        self.options = {k: v for p in parts for k, v in p.options.items()}
        of = lambda st: [p for p in parts if p.stage == st]  # noqa: E731
        self.source = (of("source") or [None])[0]
        self.pixel, self.label_mixers, self.loss_part = of("pixel"), of("label"), (of("loss") or [None])[0]
        # what a generator source applies to its parents: one policy as it is, so chimeramix+autoaugment draws what it always drew
        self.parent_policy = (self.pixel[0] if len(self.pixel) == 1 else Chain(self.pixel)) if self.pixel else None

    @property
    def recorded_options(self) -> dict:
        return {k: v for p in self.parts for k, v in p.recorded_options.items()}

    def apply(self, x, y, ctx):
        src, target = self.source, y
        if src is not None and self.pixel and src.augments_parents:
            x, target = src.apply(x, y, ctx, augment=self.parent_policy)
        else:
            for p in ([src] if src is not None else []) + self.pixel:
                x, target = p.apply(x, target, ctx)
        for p in self.label_mixers:
            x, target = p.apply(x, target, ctx)
        return x, target

    def modules(self, num_classes, device):
        return {k: v for p in self.parts for k, v in p.modules(num_classes, device).items()}

    def loss(self, model, x, target):
        return self.loss_part.loss(model, x, target) if self.loss_part is not None else super().loss(model, x, target)
