"""What the classifier looks at: class activation maps (CAM, Zhou et al. 2016) and pictures of them.

Every network here ends in global average pooling and one linear layer (the Wide ResNets, ResNet-50 from
scratch, the ImageNet backbones), so a class's logit is the spatial mean of its CAM plus the bias: CAM is exact,
and Grad-CAM, whose channel weights are the gradient's spatial mean (the head's weights over h x w for such a
head), would give the same map up to a constant factor. A network without that head is refused rather than
shown a map that means something else.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ChimeraMixError


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map (N x C x h x w) before the network's global pooling."""
    if hasattr(model, "feature_map"):
        return model.feature_map(x)
    from torchvision.models import ResNet

    if isinstance(model, ResNet):  # resnet50 from scratch: torchvision's own, its layers in forward's order
        m = model
        return m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    raise ChimeraMixError(f"no class activation map for a {type(model).__name__}: it has no global pooling + linear head")


@torch.no_grad()
def activation_maps(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CAMs of `classes` (one per image) for normalised inputs x: (raw maps N x h x w, whose spatial mean plus the
    head's bias is the class logit; maps scaled to [0, 1] per image at x's resolution, negative evidence at 0)."""
    return class_maps(model, feature_map(model, x).float(), classes, x.shape[-2:])


@torch.no_grad()
def class_maps(model: nn.Module, fmap: torch.Tensor, classes: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """activation_maps from a feature map already computed: the maps of several classes of the same images
    need the network's forward once."""
    w = model.fc.weight.float()[classes]  # N x C
    raw = torch.einsum("nchw,nc->nhw", fmap, w)
    up = F.interpolate(raw.clamp(min=0)[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    peak = up.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
    return raw, (up / peak).clamp(0, 1)


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.45) -> torch.Tensor:
    """uint8 3 x H x W image with a [0, 1] H x W map in matplotlib's jet colours over it, as float 3 x H x W."""
    from matplotlib import colormaps

    heat = torch.from_numpy(colormaps["jet"](cam.cpu().numpy())[..., :3]).permute(2, 0, 1).float()
    return ((1 - alpha) * image.float().cpu() / 255 + alpha * heat).clamp(0, 1)


def _upscaled(picture: torch.Tensor, least: int = 128) -> torch.Tensor:
    scale = max(1, -(-least // picture.shape[-1]))  # a 32 px image is too small to see a map on
    return F.interpolate(picture[None], scale_factor=scale, mode="nearest")[0] if scale > 1 else picture


def save_panels(path: str | Path, rows: list[dict], title: str = "") -> None:
    """One row per image: the image, the map of the predicted class, and of the true class where it is known.
    Each row: image (uint8 3 x H x W), pred_cam, pred_label, probability, and optionally true_cam, true_label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_path

    cols = 3 if any(r.get("true_cam") is not None for r in rows) else 2
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols, 2.4 * len(rows)), squeeze=False)
    for ax_row, r in zip(axes, rows):
        img = r["image"]
        panels = [(img.float() / 255, "image" if r.get("true_label") is None else f"true: {r['true_label']}"),
                  (overlay(img, r["pred_cam"]), f"predicted: {r['pred_label']} ({100 * r['probability']:.0f}%)")]
        if cols == 3:
            panels.append((overlay(img, r["true_cam"]), f"map of {r['true_label']}") if r.get("true_cam") is not None
                          else (None, ""))
        for ax, (pic, text) in zip(ax_row, panels):
            ax.axis("off")
            if pic is not None:
                ax.imshow(_upscaled(pic).permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(text, fontsize=8, color="black" if "predicted" not in text or r.get("correct", True)
                             else "firebrick")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.4 * len(rows))) if title else None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
