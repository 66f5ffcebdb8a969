"""The cosine loss of Barz & Denzler (2020) for training from scratch on small data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import cosine_loss
from .base import Method
from .common import check_number, soft_targets


class CosineLoss(Method):
    """L_cos = 1 - cos(f(x), e_y): the network's output, L2-normalised, against one-hot class embeddings.

    The classifier's K outputs serve as the embedding (K = number of classes,
    as Barz & Denzler's one-hot variant), so the prediction stays argmax of the
    output (the closest class embedding). xent > 0 adds their L_cos + xent * L_xent:
    a linear softmax head on the normalised embedding, trained with the network
    (the paper's best small-data variant uses xent = 0.1). The default, xent = 0,
    is L_cos alone. Crop + flip as the baseline.
    """

    name = "cosine"
    label = "Cosine loss"
    paper = "Barz, Denzler: Deep Learning on Small Datasets using Cosine Loss, WACV 2020"
    defaults: dict = {"xent": 0.0}
    stage = "loss"

    def __init__(self, **options):
        super().__init__(**options)
        self.xent = check_number("xent", self.options["xent"], self.name, at_least=0.0,
                                 why=" (weight of the cross-entropy head; Barz & Denzler use 0.1)")
        if self.xent > 0:
            self.label = f"Cosine loss + {self.xent:g} cross-entropy"
        self.head: nn.Module | None = None

    def modules(self, num_classes: int, device) -> dict[str, nn.Module]:
        if self.xent > 0 and self.head is None:
            self.head = nn.Linear(num_classes, num_classes).to(device)
        return {"xent_head": self.head} if self.head is not None else {}

    def loss(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = model(x).float()  # under autocast the output may be half precision
        loss = cosine_loss(out, soft_targets(target, out.shape[1]))
        if self.head is not None:
            logits = self.head(F.normalize(out, dim=1))
            t = target if target.dtype == torch.long else target.argmax(1)
            loss = loss + self.xent * F.cross_entropy(logits, t)
        return loss
