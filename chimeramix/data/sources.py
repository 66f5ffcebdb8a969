"""One entry point for every data source: named datasets, image folders, embedded sets."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ChimeraMixError
from . import embedded, folder, named
from .imageset import ImageSet, check_fits


def known_names() -> list[str]:
    return list(named.NAMED) + list(embedded.EMBEDDED)


class Source:
    """A data source as the user named it; `load("train" | "test")` decodes (and caches) a split."""

    def __init__(self, spec: str, kind: str, name: str, data_dir: Path | None, image_size: int | None, download: bool):
        self.spec, self.kind, self.name = spec, kind, name
        self.data_dir, self.image_size, self.download = data_dir, image_size, download
        self._cache: dict[str, ImageSet] = {}

    def __repr__(self) -> str:
        return f"Source({self.name!r}, kind={self.kind})"

    def load(self, split: str) -> ImageSet:
        if split not in ("train", "test"):
            raise ValueError(split)
        if split not in self._cache:
            if self.kind == "folder":
                data = folder.load_split(Path(self.name), split, self.image_size)
            elif self.kind == "embedded":
                data = _resize(embedded.EMBEDDED[self.name][0](split), self.image_size, f"{self.name} {split}")
            else:
                data = _resize(named.load_named(named.NAMED[self.name], self.data_dir, split, self.download), self.image_size,
                               f"{self.name} {split}")
            self._cache[split] = data
        return self._cache[split]

    def classes(self) -> tuple[str, ...]:
        if self.kind == "folder":
            return folder.check_folder(Path(self.name))
        return self.load("train").classes


def _resize(data: ImageSet, size: int | None, where: str = "the data") -> ImageSet:
    if size is None or data.image_size == (size, size):
        return data
    check_fits(len(data), size, where, copies=6)  # float copy, interpolated float, uint8 result
    x = F.interpolate(data.images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ImageSet(x.round().clamp(0, 255).to(torch.uint8), data.labels, data.classes)


def open_source(spec: str, data_dir: str | Path | None = None, image_size: int | None = None, download: bool = True) -> Source:
    """Resolve a dataset name or folder path; folders are checked for layout here, before any decoding."""
    spec = str(spec)
    if image_size is not None and image_size < 8:
        raise ChimeraMixError(f"--image-size {image_size} is too small: use 8 or more (32 for CIFAR-sized models)")
    root = Path(data_dir).expanduser() if data_dir else named.default_data_dir()
    key = spec.lower()
    if key in named.NAMED:
        return Source(spec, "named", key, root, image_size, download)
    if key in embedded.EMBEDDED:
        return Source(spec, "embedded", key, None, image_size, download)
    path = Path(spec).expanduser()
    if path.exists() or "/" in spec or spec.startswith("."):
        folder.check_folder(path)
        return Source(spec, "folder", str(path.resolve()), None, image_size, download)
    raise ChimeraMixError(
        f"unknown dataset '{spec}': known are {', '.join(known_names())}; or pass a folder with train/<class>/ and test/<class>/"
    )


def describe_sources(data_dir: str | Path | None = None) -> list[dict]:
    """Every named and embedded source: whether it is here, where it is looked for, how to get it."""
    root = Path(data_dir).expanduser() if data_dir else named.default_data_dir()
    rows = []
    for ds in named.NAMED.values():
        c = ds.train_cls
        present = named.torchvision_files_present(ds, root) or (root / c.filename).is_file()
        where = str(root / c.base_folder)
        how = f"downloaded on first use from {c.url}"
        files = c.filename
        if ds.test_remote:
            r = ds.test_remote
            present = present and ((root / r.member).is_file() or (root / r.filename).is_file())
            how += f" and {r.url}"
            files += f" and {r.filename}"
        how += f" (offline: put {files} into {root})"
        rows.append({"name": ds.name, "kind": "named", "present": present, "location": where, "how": how, "about": ds.description})
    for name, (_, about) in embedded.EMBEDDED.items():
        pkg = "scikit-learn (sklearn.datasets)" if name == "digits" else "scikit-image (skimage.data)"
        rows.append({"name": name, "kind": "embedded", "present": _embedded_present(name), "location": f"the installed {pkg}",
                     "how": "no download needed", "about": about})
    rows.append({"name": "<folder>", "kind": "folder", "present": None, "location": "the path you pass as --data",
                 "how": "lay out your images as train/<class>/*.png|jpg and test/<class>/*.png|jpg", "about": "your own images"})
    return rows


def _embedded_present(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("sklearn" if name == "digits" else "skimage") is not None
