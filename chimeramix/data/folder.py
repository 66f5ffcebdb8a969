"""Image folders: <root>/train/<class>/* and <root>/test/<class>/*."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ChimeraMixError
from .imageset import ImageSet, check_fits, from_numpy_hwc

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def images_under(folder: Path) -> list[Path]:
    """Every image file under `folder`, recursively, in sorted order; hidden files and folders are skipped."""
    folder = Path(folder)
    return sorted(
        Path(dirpath) / name
        for dirpath, _, names in os.walk(folder)
        if not any(part.startswith(".") for part in Path(dirpath).relative_to(folder).parts)
        for name in names
        if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith(".")
    )


def list_classes(split_dir: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files; classes sorted as torchvision's ImageFolder sorts them."""
    if not split_dir.is_dir():
        raise ChimeraMixError(
            f"{split_dir.parent} has no {split_dir.name}/ folder: an image folder needs train/<class>/*.png and test/<class>/*.png"
        )
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ChimeraMixError(f"{split_dir} has no class folders: put each class's images in {split_dir}/<class>/")
    files = {}
    for c in classes:
        imgs = sorted(
            p for p in (split_dir / c).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not imgs:
            raise ChimeraMixError(
                f"class folder {split_dir / c} has no images ({', '.join(IMAGE_EXTENSIONS)}): add images or remove the folder"
            )
        files[c] = imgs
    return files


def check_folder(root: Path) -> tuple[str, ...]:
    """Validate the layout without decoding images; returns the class names."""
    if not root.exists():
        raise ChimeraMixError(f"data folder {root} does not exist: check the path, or run `chimeramix datasets` for named sources")
    if not root.is_dir():
        raise ChimeraMixError(f"{root} is not a folder: --data takes a dataset name or a folder with train/ and test/")
    train = list_classes(root / "train")
    test = list_classes(root / "test")
    if list(train) != list(test):
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        raise ChimeraMixError(
            f"the classes of {root}/test differ from {root}/train "
            f"(only in train: {only_train or '-'}; only in test: {only_test or '-'}): both need the same class folders"
        )
    if len(train) < 2:  # before any image is decoded
        raise ChimeraMixError(
            f"{root}/train has only the class '{next(iter(train))}': a classifier needs at least 2 classes (one folder each in train/ and test/)"
        )
    return tuple(train)


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit grey (PNG mode I;16 or I) is scaled to 8 bits: convert("RGB") would clip it at 255."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.int64)
        a = np.clip((a * 255 + 32767) // 65535, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    return im.convert("RGB")


def _decode(path: Path, size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = _to_rgb(im)
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split())  # one line, whatever the decoder said
        raise ChimeraMixError(f"cannot read image {path}: {e.__class__.__name__}: {reason}. Replace or delete the file") from None


def load_split(root: Path, split: str, image_size: int | None = None, workers: int | None = None) -> ImageSet:
    """Decode every image of root/<split>; all images must share a size unless image_size is given."""
    files = list_classes(root / split)
    paths, labels = [], []
    for label, (cls, imgs) in enumerate(files.items()):
        paths.extend(imgs)
        labels.extend([label] * len(imgs))
    if image_size is not None:
        check_fits(len(paths), image_size, str(root / split))
    # PIL releases the GIL while decoding, so threads scale on PNG/JPEG.
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        arrays = list(pool.map(lambda p: _decode(p, image_size), paths))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        examples = {}
        for p, a in zip(paths, arrays):
            examples.setdefault(a.shape[:2], p)
        desc = ", ".join(f"{h}x{w} ({p.parent.name}/{p.name})" for (h, w), p in list(examples.items())[:3])
        raise ChimeraMixError(f"images in {root / split} have different sizes ({desc}): pass --image-size N to resize them all to N x N")
    return from_numpy_hwc(np.stack(arrays), labels, files.keys())
