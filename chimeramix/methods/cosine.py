"""The cosine loss of Barz & Denzler (2020) for training from scratch on small data."""

from __future__ import annotations

import torch

from ..losses import cosine_loss
from .base import Method
from .common import soft_targets


class CosineLoss(Method):
    """L_cos = 1 - cos(f(x), e_y): the network's output, L2-normalised, against one-hot class embeddings.

    The classifier's K outputs serve as the embedding (K = number of classes,
    as Barz & Denzler's one-hot variant), so the prediction stays argmax of the
    output (the closest class embedding). This is their L_cos alone, without
    the extra cross-entropy term on a second head over the normalised
    embedding (L_cos + lambda L_xent), which would need a separate output layer
    the shared classifiers do not have. Crop + flip as the baseline.
    """

    name = "cosine"
    label = "Cosine loss"
    paper = "Barz, Denzler: Deep Learning on Small Datasets using Cosine Loss, WACV 2020"
    defaults: dict = {}

    def loss(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = model(x).float()  # under autocast the output may be half precision
        return cosine_loss(out, soft_targets(target, out.shape[1]))
