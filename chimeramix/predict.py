"""Labels and probabilities for new images from a finished fit-classifier run.

Images are brought to the run's training resolution the way its data was (an image folder: PIL bilinear as
--image-size decodes; a named or embedded set: torch's antialiased bilinear), normalised as in training, and
classified in batches in eval mode with the run's speed switches, so the same images get the labels the
classifier stage's own evaluation gave them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ChimeraMixError
from .progress import SILENT, Progress


@dataclass
class Classifier:
    """A finished classifier run's network in eval mode, with what it needs to read new images."""

    model: nn.Module
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    run: Path
    device: torch.device
    speed: object  # SpeedOptions of the run (bf16 autocast and channels_last as it was evaluated)
    resize_rule: str  # 'pil' (image folders) or 'torch' (named and embedded sets): how its data was resized

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """fp32 logits of uint8 N x 3 x H x W images at the training resolution."""
        from .augment import normalize

        x = self.speed.inputs(normalize(images.to(self.device, non_blocking=True)))
        with self.speed.autocast(self.device):
            return self.model(x).float()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted class indices (as the classifier stage's evaluation: argmax of the logits)."""
        return self.logits(images).argmax(1).cpu()


def load_classifier(run: str | Path, device: str = "auto") -> Classifier:
    """The network of a finished fit-classifier run, ready for `predict`; refuses other folders in one line."""
    from .data import named
    from .data.device import resolve_device
    from .data.embedded import EMBEDDED
    from .speed import SpeedOptions
    from .train.classifier import load_classifier_network

    run = Path(run)
    net = load_classifier_network(run)
    cfg = net.config
    dev = resolve_device(device)
    speed = SpeedOptions.resolve(dev, cfg.get("amp", "auto"), cfg.get("channels_last", "auto"), "off", "off")
    model = speed.prepare_module(net.model.to(dev)).eval().requires_grad_(False)
    data = str(cfg.get("data", "")).lower()
    rule = "torch" if data in named.NAMED or data in EMBEDDED else "pil"
    return Classifier(model, net.classes, net.image_size, run, dev, speed, rule)


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Image files named directly, and every image under a named folder (recursively, hidden parts skipped), in order."""
    from .data.folder import IMAGE_EXTENSIONS, images_under

    if not inputs:
        raise ChimeraMixError("no images given: pass image files or folders of images")
    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = images_under(p)
            if not found:
                raise ChimeraMixError(f"{p} has no images ({', '.join(IMAGE_EXTENSIONS)}) in it or its subfolders: "
                                      "pass a folder that holds images")
            files.extend(found)
        else:
            raise ChimeraMixError(f"{p} does not exist: pass image files or folders of images")
    return list(dict.fromkeys(files))  # a file named twice is predicted once


def read_images(paths: list[Path], size: tuple[int, int], rule: str) -> torch.Tensor:
    """Decode files to uint8 N x 3 x H x W at `size`, resized as the run's training data was."""
    from .data.folder import _decode

    out = []
    for p in paths:
        if rule == "pil":
            a = _decode(p, size[0] if size[0] == size[1] else None)
        else:
            a = _decode(p, None)
        x = torch.from_numpy(a.copy()).permute(2, 0, 1)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
            x = x.round().clamp(0, 255).to(torch.uint8)
        out.append(x.contiguous())
    return torch.stack(out)


@dataclass
class Prediction:
    path: str
    labels: list[str]  # best first, top_k of them
    probabilities: list[float]

    @property
    def label(self) -> str:
        return self.labels[0]


@dataclass
class PredictionResult:
    run: str
    classes: list[str]
    top_k: int
    predictions: list[Prediction]
    csv: str | None = None
    cam: str | None = None  # the folder of class activation maps (--cam)

    def to_dict(self) -> dict:
        return {"run": self.run, "classes": self.classes, "top_k": self.top_k, "csv": self.csv, "cam": self.cam,
                "predictions": [asdict(p) for p in self.predictions]}


def csv_text(result: PredictionResult) -> str:
    """path, label, probability, then label_2, probability_2, ... up to top_k."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["path", "label", "probability"]
    for r in range(2, result.top_k + 1):
        head += [f"label_{r}", f"probability_{r}"]
    w.writerow(head)
    for p in result.predictions:
        row = [p.path]
        for label, prob in zip(p.labels, p.probabilities):
            row += [label, f"{prob:.6f}"]
        w.writerow(row)
    return buf.getvalue()


def predict_images(run: str | Path, inputs: list[str | Path], *, top_k: int = 1, batch_size: int = 100,
                   device: str = "auto", out: str | Path | None = None, force: bool = False,
                   progress: Progress = SILENT, cam: str | Path | None = None) -> PredictionResult:
    """Top-k labels and softmax probabilities of every image in `inputs` (files or folders) from a classifier run.

    With `out`, the predictions are also written there as CSV (atomically); an existing file is kept unless `force`.
    With `cam`, a folder: per image, <n>-<name>.png with its class activation map of the predicted class, and of
    the true class when the image sits in a folder named for one of the run's classes (chimeramix/cam.py).
    """
    from .fileio import check_writable, write_text

    for name, v in (("--top-k", top_k), ("--batch-size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ChimeraMixError(f"{name} must be a whole number of at least 1 (got {v!r})")
    if out is not None:
        out = Path(out)
        check_writable(out, "--out")
        if out.is_file() and not force:
            raise ChimeraMixError(f"--out {out} exists: choose another --out, or --force to replace it")
    if cam is not None:
        cam = _cam_folder(Path(cam), force)
    clf = load_classifier(run, device)
    if top_k > len(clf.classes):
        raise ChimeraMixError(f"--top-k {top_k} is more than the run's {len(clf.classes)} classes: use at most {len(clf.classes)}")
    files = find_images(inputs)
    preds: list[Prediction] = []
    progress.start("predict", len(files))
    try:
        for i in range(0, len(files), batch_size):
            chunk = files[i: i + batch_size]
            images = read_images(chunk, clf.image_size, clf.resize_rule)
            logits = clf.logits(images)
            if cam is not None:
                _save_cams(cam, clf, chunk, images, logits, first=i)
            probs = logits.softmax(1).cpu()
            # a stable descending sort breaks ties by the lower index, as argmax does in the stage's evaluation
            order = torch.sort(logits.cpu(), dim=1, descending=True, stable=True).indices[:, :top_k]
            for path, idx, pr in zip(chunk, order.tolist(), probs):
                preds.append(Prediction(str(path), [clf.classes[j] for j in idx], [float(pr[j]) for j in idx]))
            progress.update("predict", len(preds))
    finally:
        progress.end("predict")
    result = PredictionResult(str(run), list(clf.classes), top_k, preds, cam=str(cam) if cam is not None else None)
    if out is not None:
        write_text(out, csv_text(result))
        result.csv = str(out)
    return result


def _cam_folder(folder: Path, force: bool) -> Path:
    """--cam's folder, made (or empty) before anything is classified; one with files in it needs --force, and then
    only the maps of this run's images are replaced, nothing else in it is removed."""
    from .fileio import check_writable

    if folder.exists() and not folder.is_dir():
        raise ChimeraMixError(f"--cam {folder} is a file: pass a folder for the maps")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ChimeraMixError(f"--cam {folder} already holds files: choose another folder, or --force to write into it")
    check_writable(folder / "probe.png", "--cam")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_cams(folder: Path, clf: Classifier, paths: list[Path], images: torch.Tensor, logits: torch.Tensor,
               first: int) -> None:
    from .augment import normalize
    from .cam import class_maps, feature_map, save_panels

    x = normalize(images.to(clf.device))
    with torch.no_grad():
        fmap = feature_map(clf.model, x).float()  # once: the predicted and the true class's maps both weigh it
    probs = logits.softmax(1).cpu()
    pred = logits.argmax(1)
    _, pred_maps = class_maps(clf.model, fmap, pred.to(clf.device), x.shape[-2:])
    index = {c: j for j, c in enumerate(clf.classes)}
    true = [index.get(Path(p).parent.name) for p in paths]
    known = [j for j, t in enumerate(true) if t is not None]
    true_maps = {}
    if known:
        _, maps = class_maps(clf.model, fmap[known], torch.tensor([true[j] for j in known], device=clf.device),
                             x.shape[-2:])
        true_maps = dict(zip(known, maps))
    for j, path in enumerate(paths):
        p = int(pred[j])
        row = {"image": images[j], "pred_cam": pred_maps[j], "pred_label": clf.classes[p], "probability": float(probs[j, p]),
               "correct": true[j] is None or true[j] == p}
        if true[j] is not None:
            row.update(true_cam=true_maps[j], true_label=clf.classes[true[j]])
        save_panels(folder / f"{first + j:05d}-{Path(path).stem}.png", [row], title=str(path))
