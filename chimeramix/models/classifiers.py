"""Classifiers: Wide ResNets for 32x32 data, torchvision's ResNet-50 (from scratch) for 96x96, and ImageNet
backbones to fine-tune (models/backbones.py)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..errors import ChimeraMixError


class _WideBlock(nn.Module):
    """Pre-activation block of Zagoruyko & Komodakis (BN-ReLU-conv, dropout between the convs)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = F.relu(self.bn2(y))
        if self.dropout > 0:
            y = F.dropout(y, self.dropout, self.training)
        y = self.conv2(y)
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int, dropout: float = 0.3, channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n + 4")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        cin = widths[0]
        for i, cout in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(_WideBlock(cin, cout, (1 if i == 0 else 2) if j == 0 else 1, dropout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.features_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def feature_map(self, x):
        """The last feature map, before global pooling (what a class activation map weighs)."""
        return F.relu(self.bn(self.blocks(self.conv(x))))

    def features(self, x):
        return F.adaptive_avg_pool2d(self.feature_map(x), 1).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


def _resnet50(num_classes: int, dropout: float) -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None, num_classes=num_classes)


ARCHS = {
    "wrn16-8": ("WRN-16-8, dropout 0.3: the paper's network for 32x32 data", lambda k, d: WideResNet(16, 8, k, d)),
    "wrn16-4": ("WRN-16-4: a lighter Wide ResNet", lambda k, d: WideResNet(16, 4, k, d)),
    "wrn16-2": ("WRN-16-2: small enough for CPU work", lambda k, d: WideResNet(16, 2, k, d)),
    "resnet50": ("torchvision ResNet-50, from scratch: the paper's network for STL-10 (96x96)", _resnet50),
}


# Backbones with ImageNet weights (models/backbones.py); resnet50 from scratch stays the paper's STL-10 network above.
BACKBONE_ARCHS = ("resnet18", "resnet50", "efficientnet-lite0")
ARCH_NAMES = tuple(dict.fromkeys([*ARCHS, *BACKBONE_ARCHS]))


def is_backbone(arch: str, pretrained: bool = False, input_size: int | None = None) -> bool:
    """Whether a run's network is a BackboneClassifier (resized, ImageNet-normalised inputs, a new head): the
    backbones' archs, except resnet50 from scratch at the data's resolution (the paper's, as runs always had it)."""
    if arch not in BACKBONE_ARCHS:
        return False
    return arch != "resnet50" or pretrained or input_size is not None


def build_classifier(arch: str, num_classes: int, dropout: float = 0.3, *, pretrained: bool = False,
                     input_size: int | None = None) -> nn.Module:
    """The classifier network of a run (ImageNet weights are loaded separately: backbones.load_imagenet)."""
    if arch not in ARCH_NAMES:
        raise ChimeraMixError(f"unknown --arch '{arch}': choose one of {', '.join(ARCH_NAMES)}")
    if pretrained and arch not in BACKBONE_ARCHS:
        raise ChimeraMixError(f"--arch {arch} has no ImageNet weights: --pretrained takes {', '.join(BACKBONE_ARCHS)}")
    if is_backbone(arch, pretrained, input_size):
        from .backbones import BackboneClassifier

        return BackboneClassifier(arch, num_classes, input_size)
    return ARCHS[arch][1](num_classes, dropout)


def network_of(cfg, num_classes: int) -> nn.Module:
    """build_classifier for a run's config (a ClassifierConfig, or the dict run.json stores; runs from before
    backbones have neither pretrained nor input_size)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return build_classifier(get("arch"), num_classes, get("dropout", 0.3), pretrained=bool(get("pretrained", False)),
                            input_size=get("input_size"))
