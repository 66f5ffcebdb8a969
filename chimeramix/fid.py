"""Fréchet distance between two image sets: FID in Inception-v3 pool3 features, or the same distance in a
trained chimeramix classifier's penultimate features ("Fréchet distance in classifier features", never FID).

A set is written as
  DIR            every image under the folder, recursively (png, jpg, jpeg, bmp, webp), e.g. an export's train/
  SOURCE:SPLIT   split train or test of anything `open_source` reads: cifar10:train, digits:test, DIR:train
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ChimeraMixError
from .progress import SILENT, Progress

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_URL = f"https://download.pytorch.org/models/{INCEPTION_FILE}"
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
FID = "FID"
CLASSIFIER_METRIC = "Fréchet distance in classifier features"
SPLITS = ("train", "test")
SET_SYNTAX = "a folder of images (read recursively) or SOURCE:SPLIT with SPLIT train or test (cifar10:train, digits:test, DIR:train)"


# ---------------------------------------------------------------- the distance

def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of N x D features, N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an N x D array with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    from scipy.linalg import sqrtm

    with warnings.catch_warnings():  # a singular product warns; the caller checks the result itself
        warnings.simplefilter("ignore")
        return sqrtm(a)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians, in float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes differ: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise ChimeraMixError("the feature statistics contain NaN or inf: the network produced non-finite features "
                              "(damaged weights?): check the --weights file or the classifier run")
    diff = mu1 - mu2
    covmean = _sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        # The root of a singular product (fewer images than dimensions) can come out non-finite; a small ridge
        # on both covariances makes it regular and moves the distance by O(eps * d).
        ridge = eps * np.eye(d)
        covmean = _sqrtm((s1 + ridge) @ (s2 + ridge))
    if np.iscomplexobj(covmean):
        # S1 S2 is similar to a PSD matrix, so its root is real up to roundoff; a large imaginary part means
        # the statistics themselves are broken.
        worst = float(np.abs(np.diagonal(covmean).imag).max())
        if worst > 1e-3:
            raise ChimeraMixError(f"the square root of the covariance product has imaginary parts up to {worst:.3g}: "
                                  "the statistics are numerically broken; use more images per set")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_of_features(f1, f2) -> float:
    """The Fréchet distance between the Gaussians fitted to two N x D feature arrays (N >= 2 each).

    Where a set has fewer images than dimensions its covariance is A^T A with A its centred features / sqrt(N - 1),
    and Tr (S1 S2)^(1/2) is exactly the sum of the square roots of the eigenvalues of the N x N symmetric
    A S_other A^T (same non-zero spectrum): no D x D sqrtm, which takes about a minute at D = 2048 on two cores
    and needs the eps ridge there. Otherwise `frechet_distance` (scipy's sqrtm).
    """
    a, b = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    d = a.shape[1]
    if min(len(a), len(b)) >= d:
        return frechet_distance(mu1, s1, mu2, s2)
    small, mu_small, other = (a, mu1, s2) if len(a) <= len(b) else (b, mu2, s1)
    if not all(np.isfinite(x).all() for x in (mu1, mu2, s1, s2)):
        return frechet_distance(mu1, s1, mu2, s2)  # its one-line refusal
    A = (small - mu_small) / np.sqrt(len(small) - 1)
    k = A @ other @ A.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((k + k.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross)


# ---------------------------------------------------------------- image sets

@dataclass
class ImageSetSpec:
    """A parsed SET argument: a folder's image files, or a split of a data source (decoded on first use)."""

    text: str
    files: list[Path] | None = None
    source: str | None = None
    split: str | None = None
    data_dir: str | Path | None = None
    _images: list = field(default_factory=list, repr=False)

    def images(self):
        from .data import open_source

        if not self._images:
            self._images.append(open_source(self.source, self.data_dir).load(self.split).images)
        return self._images[0]

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.images())

    def batches(self, size: int):
        """uint8 3 x H x W tensors, `size` at a time (a folder's images may differ in size)."""
        if self.files is None:
            imgs = self.images()
            for i in range(0, len(imgs), size):
                yield list(imgs[i: i + size])
            return
        from .data.folder import _decode

        for i in range(0, len(self.files), size):
            yield [torch.from_numpy(_decode(p, None).copy()).permute(2, 0, 1).contiguous() for p in self.files[i: i + size]]


def parse_set(spec: str, data_dir: str | Path | None = None, what: str = "SET") -> ImageSetSpec:
    """Resolve a SET or REFERENCE argument (see the module's docstring); refuses anything else in one line."""
    from .data.folder import IMAGE_EXTENSIONS, images_under
    from .data.sources import known_names, open_source

    spec = str(spec)
    head, sep, tail = spec.rpartition(":")
    if sep and tail.lower() in SPLITS and head:
        open_source(head, data_dir)  # checks the name, or a folder's train/ and test/ layout, before any decoding
        return ImageSetSpec(spec, source=head, split=tail.lower(), data_dir=data_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            raise ChimeraMixError(f"{what} {spec} holds train/ and test/: name one split, {spec}:train or {spec}:test")
        files = images_under(path)
        if not files:
            raise ChimeraMixError(f"{what} {spec} has no images ({', '.join(IMAGE_EXTENSIONS)}) in it or its subfolders: "
                                  "pass a folder that holds images")
        return ImageSetSpec(spec, files=files)
    if sep and (head.lower() in known_names() or Path(head).expanduser().is_dir()):
        raise ChimeraMixError(f"{what} {spec}: unknown split '{tail}': use {head}:train or {head}:test")
    if spec.lower() in known_names():
        raise ChimeraMixError(f"{what} {spec} needs a split: {spec}:train or {spec}:test")
    if path.exists():
        raise ChimeraMixError(f"{what} {spec} is a file, not a folder: pass {SET_SYNTAX}")
    raise ChimeraMixError(f"{what} '{spec}' is neither an existing folder nor SOURCE:SPLIT: pass {SET_SYNTAX}")


# ---------------------------------------------------------------- feature extractors

def inception_weights_path(weights: str | Path | None = None) -> Path:
    """The --weights file, else torchvision's Inception-v3 file in torch's hub cache; one line saying how to get it."""
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise ChimeraMixError(f"--weights {p} is not a file: pass torchvision's {INCEPTION_FILE} (from {INCEPTION_URL})")
        return p
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(cache.glob("inception_v3_google-*.pth"), key=lambda p: (p.name != INCEPTION_FILE, p.name))
    if found:
        return found[0]
    raise ChimeraMixError(f"no Inception-v3 weights here: download {INCEPTION_FILE} from {INCEPTION_URL} "
                          f"into {cache}, or pass --weights FILE")


def load_inception(weights: str | Path | None = None, device="cpu") -> nn.Module:
    """torchvision's Inception-v3 with torchvision's weights, fc replaced by Identity: images -> pool3 (2048-d)."""
    from torchvision.models import inception_v3

    path = inception_weights_path(weights)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code runs
    except Exception as e:  # truncated files, pickles with objects weights_only refuses, not a torch file at all
        reason = " ".join(str(e).split())[:160]
        raise ChimeraMixError(f"cannot read {path} as a weights file ({e.__class__.__name__}: {reason}): "
                              f"pass torchvision's {INCEPTION_FILE}") from None
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ChimeraMixError(f"{path} is not a state_dict (a dict of tensors): pass torchvision's {INCEPTION_FILE}")
    fc = sd.get("fc.weight")
    if fc is not None and fc.shape[0] == 1008:
        # pytorch-fid's pt_inception file: the key names match, but its network (the TF graph) pools differently
        # in Mixed_5-7 (avg pools without padding counts, a max pool in the last block), so loading it into
        # torchvision's network would give numbers that are neither its FID nor torchvision's.
        raise ChimeraMixError(f"{path} holds pytorch-fid's TF-Inception weights (1008 classes), whose network differs from "
                              f"torchvision's: only torchvision's format is supported, {INCEPTION_FILE} from {INCEPTION_URL}")
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches raise even with strict=False
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "shapes differ")
        raise ChimeraMixError(f"{path} does not fit torchvision's Inception-v3 ({detail}): pass {INCEPTION_FILE}") from None
    if missing or unexpected:
        raise ChimeraMixError(f"{path} is not a torchvision Inception-v3 state_dict (missing {missing[:2]}, "
                              f"unexpected {unexpected[:2]}): pass {INCEPTION_FILE} from {INCEPTION_URL}")
    model.fc = nn.Identity()
    return model.to(device).eval().requires_grad_(False)


def inception_inputs(images: list[torch.Tensor], device) -> torch.Tensor:
    """uint8 3 x H x W images -> float 299 x 299 in [-1, 1], resized as clean-fid (Parmar et al. 2021) resizes.

    torch's bicubic with antialias=True on float [0, 255] is PIL's bicubic filter (equal to 4e-4 of 255 for 32 -> 299
    and 32 -> 16 against PIL mode 'F'); on float it is not re-quantised to uint8, as clean-fid's float resize, and it
    runs batched on the device. Clipped to [0, 255] as clean-fid clips. [-1, 1] is what the TF-ported weights take
    with transform_input=False.
    """
    out = []
    for x in images:
        x = x[None].to(device, torch.float32)
        out.append(F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bicubic", antialias=True, align_corners=False))
    return torch.cat(out).clamp_(0, 255).div_(127.5).sub_(1.0)


@dataclass
class ClassifierEmbedding:
    """A finished classifier run's network up to the global average pool, and the resolution it was trained at."""

    embed: object  # images in [-1, 1] -> N x dim
    image_size: tuple[int, int]
    dim: int
    run: Path
    head: object = None  # N x dim features -> N x classes logits (the network's last layer)

    @torch.no_grad()
    def __call__(self, images: list[torch.Tensor], device) -> torch.Tensor:
        return self.embed(self._inputs(images, device))

    @torch.no_grad()
    def logits(self, images: list[torch.Tensor], device) -> torch.Tensor:
        """The classifier's outputs for the same inputs (its predictions: argmax)."""
        return self.head(self.embed(self._inputs(images, device)))

    def _inputs(self, images: list[torch.Tensor], device) -> torch.Tensor:
        from .augment import normalize

        xs = []
        for x in images:
            x = x[None].to(device)
            if tuple(x.shape[-2:]) != self.image_size:
                # as --image-size brings a training set to its size: bilinear, antialiased when shrinking
                shrink = x.shape[-1] > self.image_size[1] or x.shape[-2] > self.image_size[0]
                x = F.interpolate(x.float(), size=self.image_size, mode="bilinear", align_corners=False, antialias=shrink)
                x = x.round().clamp(0, 255).to(torch.uint8)
            xs.append(normalize(x))
        return torch.cat(xs)


def load_classifier_embedding(run: str | Path, device="cpu") -> ClassifierEmbedding:
    """The penultimate (global-average-pooled) features of a finished fit-classifier run, in eval mode."""
    from .train.classifier import load_classifier_network

    run = Path(run)
    net = load_classifier_network(run)
    model = net.model
    if hasattr(model, "features"):  # the Wide ResNets: BN-ReLU, global average pool
        dim, embed, head = model.features_dim, model.features, model.fc
    else:  # torchvision's ResNet-50: everything before fc
        dim, head, model.fc = model.fc.in_features, model.fc, nn.Identity()
        embed = model
    model.to(device).eval().requires_grad_(False)
    head.to(device).eval().requires_grad_(False)
    return ClassifierEmbedding(embed, net.image_size, dim, run, head)


# ---------------------------------------------------------------- the whole comparison

@dataclass
class FrechetResult:
    distance: float
    metric: str  # "FID" or "Fréchet distance in classifier features"
    features: str  # "inception" or "classifier:RUN"
    feature_dim: int
    set: str
    set_size: int
    reference: str
    reference_size: int
    warnings: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def parse_features(features: str) -> tuple[str, Path | None]:
    kind, sep, run = str(features).partition(":")
    if kind == "inception" and not sep:
        return "inception", None
    if kind == "classifier" and run:
        return "classifier", Path(run).expanduser()
    raise ChimeraMixError(f"unknown --features '{features}': use inception, or classifier:RUN with RUN a finished fit-classifier run folder")


@torch.no_grad()
def _features(images: ImageSetSpec, embed, device, batch_size: int, task: str, progress: Progress) -> np.ndarray:
    n, done, out = len(images), 0, []
    progress.start(task, n)
    for batch in images.batches(batch_size):
        out.append(embed(batch).double().cpu().numpy())
        done += len(batch)
        progress.update(task, done)
    progress.end(task)
    return np.concatenate(out)


def compare_image_sets(image_set: str, reference: str, *, features: str = "inception", weights: str | Path | None = None,
                       batch_size: int = 50, device: str = "auto", data_dir: str | Path | None = None,
                       progress: Progress = SILENT) -> FrechetResult:
    """Fréchet distance between two image sets (SET syntax: see the module's docstring).

    features 'inception': FID with torchvision's Inception-v3 weights (`weights` or torch's hub cache);
    'classifier:RUN': the same distance in a trained classifier's penultimate features.
    """
    from .data.device import resolve_device

    kind, run = parse_features(features)
    if kind != "inception" and weights is not None:
        raise ChimeraMixError("--weights is for --features inception only: drop it, the classifier run has its own weights")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ChimeraMixError(f"--batch-size {batch_size} is not a positive whole number: use e.g. 50")
    a, b = parse_set(image_set, data_dir, "SET"), parse_set(reference, data_dir, "REFERENCE")
    dev = resolve_device(device)
    if kind == "inception":
        model = load_inception(weights, dev)
        embed, dim, metric = (lambda imgs: model(inception_inputs(imgs, dev))), INCEPTION_DIM, FID
    else:
        clf = load_classifier_embedding(run, dev)
        embed, dim, metric = (lambda imgs: clf(imgs, dev)), clf.dim, CLASSIFIER_METRIC
    for what, s in (("SET", a), ("REFERENCE", b)):
        if len(s) < 2:
            raise ChimeraMixError(f"{what} {s.text} has {len(s)} image: a covariance needs at least 2 images (use many more)")
    fa = _features(a, embed, dev, batch_size, "set", progress)
    fb = _features(b, embed, dev, batch_size, "reference", progress)
    notes = [
        f"{what} has {len(f)} images, fewer than the {dim} feature dimensions: its covariance is rank-deficient and the "
        f"distance biased; compare only distances computed from equally many images, or use {dim} or more"
        for what, f in (("SET", fa), ("REFERENCE", fb)) if len(f) < dim
    ]
    d = frechet_distance_of_features(fa, fb)
    return FrechetResult(d, metric, "inception" if run is None else f"classifier:{run}", dim,
                         a.text, len(fa), b.text, len(fb), notes)
