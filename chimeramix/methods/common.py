"""Helpers the comparison methods share: soft labels, Beta draws from a given rng (torch.Generator), boxes, partner images.

Everything here draws its randomness from the `torch.Generator` it is given
(the step's `ctx.rng`), runs batched on the batch's device, and never moves a
value to the host, so a training step stays free of device syncs and a resumed
run repeats the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..augment import CropFlip, normalize
from ..errors import ChimeraMixError


def soft_targets(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Long labels -> one-hot float N x K; soft labels (already N x K) are returned as they are."""
    if target.dtype == torch.long:
        return F.one_hot(target, num_classes).float()
    return target.float()


def sample_gamma(shape, alpha: float, rng: torch.Generator, device, tries: int = 16) -> torch.Tensor:
    """Gamma(alpha, 1) draws using only `rng` (torch's own Gamma sampler takes no generator).

    Marsaglia & Tsang (2000) for alpha >= 1: propose d * v with v = (1 + c z)^3,
    z ~ N(0, 1); accept when log u < z^2 / 2 + d - d v + d log v. Its acceptance
    rate is above 95 % for every alpha >= 1, so `tries` proposals are drawn at
    once per value and the first accepted one is kept: a rejection loop without
    a Python loop or a host sync. All `tries` being rejected has a probability
    below 0.05^16 (about 1e-21); the last proposal (a close approximation) is
    used then. For alpha < 1: Gamma(alpha) = Gamma(alpha + 1) * U^(1 / alpha).
    """
    shape = tuple(shape)
    a = alpha if alpha >= 1 else alpha + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    z = torch.randn(*shape, tries, generator=rng, device=device)
    u = torch.rand(*shape, tries, generator=rng, device=device)
    v = (1 + c * z) ** 3
    pos = v > 0
    logv = torch.log(torch.where(pos, v, torch.ones_like(v)))
    ok = pos & (torch.log(u) < 0.5 * z * z + d - d * v + d * logv)
    ok[..., -1] = True  # fallback: the last proposal when every earlier one was rejected
    first = torch.argmax(ok.to(torch.int8), dim=-1, keepdim=True)
    g = (d * v.clamp_min(0)).gather(-1, first).squeeze(-1)
    if alpha < 1:
        g = g * torch.rand(shape, generator=rng, device=device) ** (1.0 / alpha)
    return g


def sample_beta(shape, a: float, b: float, rng: torch.Generator, device) -> torch.Tensor:
    """Beta(a, b) = G_a / (G_a + G_b) with two Gamma draws from `rng`."""
    ga = sample_gamma(shape, a, rng, device)
    gb = sample_gamma(shape, b, rng, device)
    return ga / (ga + gb).clamp_min(torch.finfo(ga.dtype).tiny)


def box_masks(y1: torch.Tensor, x1: torch.Tensor, y2: torch.Tensor, x2: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-sample boxes [y1, y2) x [x1, x2) (already clipped) as a bool mask N x 1 x h x w."""
    dev = y1.device
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    in_r = (rows >= y1[:, None]) & (rows < y2[:, None])
    in_c = (cols >= x1[:, None]) & (cols < x2[:, None])
    return (in_r[:, :, None] & in_c[:, None, :])[:, None]


def centred_boxes(cy: torch.Tensor, cx: torch.Tensor, bh, bw, h: int, w: int):
    """Boxes of bh x bw (ints or per-sample tensors) centred at (cy, cx), clipped to the image: (y1, x1, y2, x2)."""
    bh = torch.as_tensor(bh, device=cy.device)
    bw = torch.as_tensor(bw, device=cy.device)
    y1 = cy - torch.div(bh, 2, rounding_mode="floor")
    x1 = cx - torch.div(bw, 2, rounding_mode="floor")
    return y1.clamp(0, h), x1.clamp(0, w), (y1 + bh).clamp(0, h), (x1 + bw).clamp(0, w)


def augmented_images(data, idx: torch.Tensor, size: int, rng: torch.Generator) -> torch.Tensor:
    """Training images `idx`, crop + flip augmented and normalised like the batch (float, [-1, 1])."""
    crop = CropFlip.sample(len(idx), size, rng, data.device)
    return normalize(crop.apply(data.images[idx]))


def check_probability(name: str, value, method: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ChimeraMixError(f"{method}: {name} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ChimeraMixError(f"{method}: {name} must be a probability in [0, 1], got {value!r}")
    return v


def check_number(name: str, value, method: str, *, above: float | None = None, at_least: float | None = None,
                 integer: bool = False, why: str = "") -> float:
    """A number option, checked against a bound; the message names the method, the option and the bound."""
    try:
        v = float(value)
        if integer and v != int(v):
            raise ValueError
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ChimeraMixError(f"{method}: {name} must be {kind}, got {value!r}") from None
    if above is not None and not v > above:
        raise ChimeraMixError(f"{method}: {name} must be > {above:g}{why}, got {value!r}")
    if at_least is not None and not v >= at_least:
        raise ChimeraMixError(f"{method}: {name} must be >= {at_least:g}{why}, got {value!r}")
    return int(v) if integer else v
