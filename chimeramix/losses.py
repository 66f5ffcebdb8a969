"""Losses: LSGAN, reconstruction, Laplacian pyramid, soft-label cross-entropy, cosine loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.transform import build_laplacian_pyramid


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: MSE of the discriminator output against 1 (real) or 0 (fake)."""
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    return F.mse_loss(pred, target)


def reconstruction(rec1, x1, rec2, x2) -> torch.Tensor:
    """MSE of the all-ones decode against x1 and the all-zeros decode against x2 (mean of the two)."""
    return 0.5 * (F.mse_loss(rec1, x1) + F.mse_loss(rec2, x2))


def laplacian(pred: torch.Tensor, target: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """L1 between Laplacian pyramids (kornia), summed over levels."""
    levels = max(1, min(levels, int(math.log2(min(pred.shape[-2:])))))
    pp = build_laplacian_pyramid(pred, levels)
    pt = build_laplacian_pyramid(target, levels)
    return sum(F.l1_loss(a, b) for a, b in zip(pp, pt))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability vector per sample (mixup, cutmix, zeta-mixup)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def cosine_loss(embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Barz & Denzler (2020): 1 - cos(embedding, target) with one-hot (or soft) targets."""
    return (1 - F.cosine_similarity(embedding, targets, dim=1)).mean()
