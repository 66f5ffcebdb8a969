"""Losses: LSGAN, reconstruction, Laplacian pyramid, soft-label cross-entropy, cosine loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import filter2d


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: MSE of the discriminator output against 1 (real) or 0 (fake)."""
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    return F.mse_loss(pred, target)


def reconstruction(recs, xs) -> torch.Tensor:
    """The sum over parents of each all-one-parent decode's MSE against its parent (a sum, as the public code's
    mse(rec1, x1) + mse(rec2, x2) for pairs)."""
    loss = F.mse_loss(recs[0], xs[0])
    for r, x in zip(recs[1:], xs[1:]):
        loss = loss + F.mse_loss(r, x)
    return loss


def laplacian_sum(recs, xs, levels: int = 3) -> torch.Tensor:
    """`laplacian` of each reconstruction against its parent, summed over parents as `reconstruction` is."""
    loss = laplacian(recs[0], xs[0], levels)
    for r, x in zip(recs[1:], xs[1:]):
        loss = loss + laplacian(r, x, levels)
    return loss


# The 5x5 binomial kernel ([1, 4, 6, 4, 1] / 16, outer product) of Burt & Adelson's pyramid and the public code.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def laplacian_pyramid(x: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    """`levels` band-pass levels (no low-pass residual), as the public code's LapLoss builds them.

    Blur (kornia's filter2d, reflect border) and keep every second pixel; expand by inserting zeros and
    blurring with 4 x the kernel. kornia's own build_laplacian_pyramid is not used: its pyrdown/pyrup
    resample bilinearly instead of decimating and zero-inserting (different band-pass levels:
    tests/test_losses.py measures the gap), it appends the low-pass residual, and it pads 96 px images to 128.
    """
    kernel = torch.outer(_BINOMIAL, _BINOMIAL).to(x.device, x.dtype)[None]
    out = []
    current = x
    for _ in range(levels):
        if min(current.shape[-2:]) < 3:  # reflect padding by 2 needs 3 pixels: no finer band is left
            break
        down = filter2d(current, kernel, border_type="reflect")[..., ::2, ::2]
        up = torch.zeros(*down.shape[:-2], 2 * down.shape[-2], 2 * down.shape[-1], device=x.device, dtype=x.dtype)
        up[..., ::2, ::2] = down
        up = filter2d(up, 4 * kernel, border_type="reflect")[..., : current.shape[-2], : current.shape[-1]]
        out.append(current - up)
        current = down
    return out


def laplacian(pred: torch.Tensor, target: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """L1 between the band-pass levels of the two Laplacian pyramids, summed over levels."""
    return sum(F.l1_loss(a, b) for a, b in zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability vector per sample (mixup, cutmix, zeta-mixup)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def cosine_loss(embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Barz & Denzler (2020): 1 - cos(embedding, target) with one-hot (or soft) targets."""
    return (1 - F.cosine_similarity(embedding, targets, dim=1)).mean()
