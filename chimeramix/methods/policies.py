"""AutoAugment and TrivialAugment (wide), one policy draw per sample, batched on the device.

Why not kornia or torchvision as they are:

- kornia.augmentation.auto.AutoAugment / TrivialAugment pick ONE sub-policy per
  forward call (`rand_selector.sample((1,))` in `get_forward_sequence`): every
  image of a batch gets the same operations (only magnitudes vary per row).
  They also draw from torch's global RNG, and kornia's TrivialAugment is not
  the "wide" space (rotate +-30 deg, translate +-0.5, no 31 magnitude bins).
- torchvision.transforms.v2.AutoAugment / TrivialAugmentWide are the reference
  definitions (PIL semantics, 10 and 31 magnitude bins), but one call also
  draws one operation for a whole batched tensor, from the global RNG, and
  applying them per sample would be a Python loop of small kernels per image.

So the policy tables and magnitude spaces are taken from torchvision (the
reference), and the operations are re-implemented batched with per-sample
parameters: every sample draws its own sub-policy / operation, magnitude bin
and sign from ctx.rng. One "slot" applies to each sample exactly one operation
(or none): the affine operations share one grid_sample with per-sample
matrices, the blend operations (brightness, colour, contrast, sharpness) one
blend with per-sample factors and degenerate images, and the rest are
elementwise or per-image maps, selected per sample with torch.where. No loop
over samples and, on accelerators, no host sync (on the CPU, families no sample
uses are skipped); AutoAugment runs two slots, TrivialAugment one.
The operations follow torchvision's float-tensor kernels (tests compare them
op by op), except posterize, which follows PIL's uint8 bit masking so that 8
bits leaves an image unchanged.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from ..errors import ChimeraMixError
from .base import Method, StepContext
from .common import check_number

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
OP = {name: i for i, name in enumerate(OPS)}
POLICIES = ("cifar10", "imagenet", "svhn")


def _isin(op: torch.Tensor, names) -> torch.Tensor:
    m = torch.zeros_like(op, dtype=torch.bool)
    for n in names:
        m |= op == OP[n]
    return m


def _affine(u: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Shear / translate / rotate with per-sample parameters, as torchvision's affine_image / rotate_image.

    Inverse matrices as torchvision's _get_inverse_affine_matrix (shears about
    the top-left corner, rotation and translation about the centre; rotate
    passes -angle), the grid as its _affine_grid, nearest sampling, fill 0.
    """
    n, _, h, w = u.shape
    dev, dt = u.device, u.dtype
    zero = torch.zeros_like(mag)
    shx = torch.where(op == OP["ShearX"], torch.atan(mag), zero)  # radians(degrees(atan(m)))
    shy = torch.where(op == OP["ShearY"], torch.atan(mag), zero)
    rot = torch.where(op == OP["Rotate"], torch.deg2rad(-mag), zero)
    tx = torch.where(op == OP["TranslateX"], torch.trunc(mag), zero)  # int(magnitude)
    ty = torch.where(op == OP["TranslateY"], torch.trunc(mag), zero)
    shear = (op == OP["ShearX"]) | (op == OP["ShearY"])
    cx = torch.where(shear, torch.full_like(mag, -0.5 * w), zero)  # center=[0, 0] -> top-left, relative to the centre
    cy = torch.where(shear, torch.full_like(mag, -0.5 * h), zero)
    a = torch.cos(rot - shy) / torch.cos(shy)
    b = -(a * torch.tan(shx) + torch.sin(rot))
    c = torch.sin(rot - shy) / torch.cos(shy)
    d = torch.cos(rot) - c * torch.tan(shx)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    theta = torch.stack([torch.stack([m0, m1, m2], 1), torch.stack([m3, m4, m5], 1)], 1).to(dt)  # n x 2 x 3
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=dev, dtype=dt)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=dev, dtype=dt)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=dev, dtype=dt)], -1)
    scale = torch.tensor([0.5 * w, 0.5 * h], device=dev, dtype=dt)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale)
    return F.grid_sample(u, grid.view(n, h, w, 2), mode="nearest", padding_mode="zeros", align_corners=False)


def _sharpness_degenerate(u: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (1 1 1 / 1 5 1 / 1 1 1, / 13) inside, the image itself on the one-pixel border."""
    c = u.shape[1]
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=u.device, dtype=u.dtype) / 13.0
    blurred = F.conv2d(u, k.expand(c, 1, 3, 3), groups=c)
    out = u.clone()
    out[..., 1:-1, 1:-1] = blurred
    return out


def apply_ops(u: torch.Tensor, op: torch.Tensor, mag: torch.Tensor, skip_absent: bool | None = None) -> torch.Tensor:
    """One operation per sample: u float N x 3 x H x W in [0, 1], op long N (index into OPS), mag float N (signed).

    mag is in torchvision's units: shear factor, translation in pixels, angle in
    degrees, factor - 1 for the blends, bits for posterize, threshold in [0, 1]
    for solarize; ignored by the operations without a magnitude.

    skip_absent: compute only the operation families some sample uses. Knowing
    which are used means reading `op` on the host: free on the CPU (the default
    there), a device sync elsewhere, so on accelerators every family is
    computed for the whole batch and selected per sample (the results agree).
    """
    if skip_absent is None:
        skip_absent = u.device.type == "cpu"
    used = set(op.tolist()) if skip_absent else None

    def uses(*names) -> bool:
        return used is None or any(OP[nm] in used for nm in names)

    n = u.shape[0]
    sel = lambda m: m.view(n, 1, 1, 1)  # noqa: E731
    out = u

    geo = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
    if uses(*geo):
        out = torch.where(sel(_isin(op, geo)), _affine(u, op, mag), out)

    blend_ops = ("Brightness", "Color", "Contrast", "Sharpness")
    if uses(*blend_ops):
        blends = _isin(op, blend_ops)
        factor = sel(torch.where(blends, 1.0 + mag, torch.ones_like(mag)))
        degenerate = torch.zeros_like(u)  # brightness blends towards black
        if uses("Color", "Contrast"):
            gray = (0.2989 * u[:, 0] + 0.587 * u[:, 1] + 0.114 * u[:, 2])[:, None]
            degenerate = torch.where(sel(op == OP["Color"]), gray.expand_as(u), degenerate)
            degenerate = torch.where(sel(op == OP["Contrast"]), gray.mean((1, 2, 3), keepdim=True).expand_as(u), degenerate)
        # torchvision leaves images of 2 pixels or fewer per side unsharpened
        if uses("Sharpness") and u.shape[-1] > 2 and u.shape[-2] > 2:
            degenerate = torch.where(sel(op == OP["Sharpness"]), _sharpness_degenerate(u), degenerate)
        elif uses("Sharpness"):
            degenerate = torch.where(sel(op == OP["Sharpness"]), u, degenerate)
        out = torch.where(sel(blends), (factor * u + (1 - factor) * degenerate).clamp(0, 1), out)

    if uses("Posterize"):  # as PIL / uint8: keep the top `bits` bits of each 8-bit value
        bits = torch.where(op == OP["Posterize"], mag, torch.full_like(mag, 8.0)).round().clamp(0, 8)
        step = sel(torch.pow(2.0, 8 - bits))
        post = torch.floor(torch.round(u * 255) / step) * step / 255
        out = torch.where(sel(op == OP["Posterize"]), post, out)
    if uses("Solarize"):
        out = torch.where(sel(op == OP["Solarize"]), torch.where(u >= sel(mag), 1 - u, u), out)
    if uses("AutoContrast"):
        out = torch.where(sel(op == OP["AutoContrast"]), TF.autocontrast(u), out)
    if uses("Equalize"):
        out = torch.where(sel(op == OP["Equalize"]), TF.equalize(u), out)
    if uses("Invert"):
        out = torch.where(sel(op == OP["Invert"]), 1 - u, out)
    return out


def _space(space: dict, num_bins: int, h: int, w: int, device):
    """torchvision's augmentation space as tensors: magnitudes[op, bin] (0 where none) and signed[op]."""
    mags = torch.zeros(len(OPS), num_bins)
    signed = torch.zeros(len(OPS), dtype=torch.bool)
    for name, (fn, sgn) in space.items():
        m = fn(num_bins, h, w)
        if m is not None:
            mags[OP[name]] = m.float()
        signed[OP[name]] = sgn
    return mags.to(device), signed.to(device)


def _signed(mags: torch.Tensor, signed: torch.Tensor, op: torch.Tensor, bins: torch.Tensor, rng, device) -> torch.Tensor:
    m = mags[op, bins]
    flip = signed[op] & (torch.rand(op.shape[0], generator=rng, device=device) <= 0.5)  # as torchvision: rand <= 0.5
    return torch.where(flip, -m, m)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) * 0.5).clamp(0, 1)


def _from_unit(u: torch.Tensor) -> torch.Tensor:
    return u * 2 - 1


class AutoAugment(Method):
    """AutoAugment's learned policy, with a sub-policy drawn per sample.

    Each sample draws one of the 25 sub-policies; each of its two operations is
    applied with its probability, at its magnitude bin (of 10), with a random
    sign where the operation is signed (torchvision's definitions). policy=None
    picks the CIFAR-10 policy for images up to 64 x 64 and the ImageNet policy
    for larger ones (STL-10's 96 x 96), as the ChimeraMix paper's Table 2.
    """

    name = "autoaugment"
    stage = "pixel"
    label = "AutoAugment"
    paper = "Cubuk, Zoph, Mane, Vasudevan, Le: AutoAugment: Learning Augmentation Strategies From Data, CVPR 2019"
    defaults = {"policy": None}

    def __init__(self, **options):
        super().__init__(**options)
        p = self.options["policy"]
        if p is not None and str(p).lower() not in POLICIES:
            raise ChimeraMixError(f"autoaugment: unknown policy {p!r}: choose one of {', '.join(POLICIES)} (or leave it unset)")
        self.policy = None if p is None else str(p).lower()
        self._cache: dict = {}

    def policy_for(self, image_size: int) -> str:
        return self.policy or ("cifar10" if image_size <= 64 else "imagenet")

    def _tables(self, h: int, w: int, device):
        key = (h, w, str(device))
        if key not in self._cache:
            name = self.policy_for(max(h, w))
            # torchvision's published tables are read from private attributes (`_policies`, `_AUGMENTATION_SPACE`)
            # because they are the reference definitions and torchvision exposes no public accessor; copying them
            # here would let the two drift apart silently. If a torchvision release renames them, this line raises
            # AttributeError at the first AutoAugment batch and tests/test_methods.py (which compares the ops and
            # magnitude bins with torchvision's own transforms) fails: read the new names there.
            tv = T.AutoAugment(T.AutoAugmentPolicy(name))
            pol = tv._policies  # [((op, p, bin), (op, p, bin)), ...]
            ops = torch.tensor([[OP[o] for o, _, _ in sp] for sp in pol], device=device)
            probs = torch.tensor([[p for _, p, _ in sp] for sp in pol], device=device)
            bins = torch.tensor([[b or 0 for _, _, b in sp] for sp in pol], device=device)
            mags, signed = _space(tv._AUGMENTATION_SPACE, 10, h, w, device)
            self._cache[key] = (ops, probs, bins, mags, signed)
        return self._cache[key]

    def apply(self, x, y, ctx: StepContext):
        n, _, h, w = x.shape
        dev, rng = x.device, ctx.rng
        ops, probs, bins, mags, signed = self._tables(h, w, dev)
        sub = torch.randint(0, ops.shape[0], (n,), generator=rng, device=dev)
        u = _to_unit(x)
        for k in range(ops.shape[1]):  # the two operations of each sub-policy, in order
            op, p, b = ops[sub, k], probs[sub, k], bins[sub, k]
            use = torch.rand(n, generator=rng, device=dev) <= p
            mag = _signed(mags, signed, op, b, rng, dev)
            u = apply_ops(u, torch.where(use, op, torch.zeros_like(op)), mag)
        return _from_unit(u), y


class TrivialAugment(Method):
    """TrivialAugment (wide): per sample one operation of 14, uniformly, at a uniform magnitude bin of 31."""

    name = "trivialaugment"
    stage = "pixel"
    label = "TrivialAugment"
    paper = "Müller, Hutter: TrivialAugment: Tuning-free Yet State-of-the-Art Data Augmentation, ICCV 2021"
    defaults = {"num_magnitude_bins": 31}

    def __init__(self, **options):
        super().__init__(**options)
        self.bins = check_number("num_magnitude_bins", self.options["num_magnitude_bins"], self.name, at_least=2,
                                 integer=True)
        self._cache: dict = {}

    def _tables(self, h: int, w: int, device):
        key = (h, w, str(device))
        if key not in self._cache:
            space = T.TrivialAugmentWide._AUGMENTATION_SPACE  # private, as AutoAugment's tables above: why and what breaks
            ops = torch.tensor([OP[o] for o in space], device=device)
            mags, signed = _space(space, self.bins, h, w, device)
            self._cache[key] = (ops, mags, signed)
        return self._cache[key]

    def apply(self, x, y, ctx: StepContext):
        n, _, h, w = x.shape
        dev, rng = x.device, ctx.rng
        ops, mags, signed = self._tables(h, w, dev)
        op = ops[torch.randint(0, len(ops), (n,), generator=rng, device=dev)]
        b = torch.randint(0, self.bins, (n,), generator=rng, device=dev)
        mag = _signed(mags, signed, op, b, rng, dev)
        return _from_unit(apply_ops(_to_unit(x), op, mag)), y


__all__ = ["OPS", "AutoAugment", "TrivialAugment", "apply_ops"]
