"""Named datasets: training images through torchvision, ciFAIR test sets from their release archives."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from torchvision.datasets.utils import download_url

from ..errors import ChimeraMixError
from ..fileio import file_digest
from .imageset import ImageSet, from_numpy_hwc


@dataclass(frozen=True)
class Remote:
    """A downloadable archive and the file inside it that we read."""

    url: str
    filename: str
    md5: str
    member: str  # path of the pickled test batch inside the archive
    member_md5: str


@dataclass(frozen=True)
class NamedDataset:
    name: str
    description: str
    train_cls: type  # a torchvision dataset class; its md5 tables verify the files
    test_remote: Remote | None = None  # ciFAIR: the test set comes from here instead of torchvision
    paper_image_size: int = 32


CIFAIR10 = Remote(
    "https://github.com/cvjena/cifair/releases/download/v1.0/ciFAIR-10.zip",
    "ciFAIR-10.zip",
    "ca08fd390f0839693d3fc45c4e49585f",
    "ciFAIR-10/test_batch",
    "01290e6b622a1977a000eff13650aca2",
)
CIFAIR100 = Remote(
    "https://github.com/cvjena/cifair/releases/download/v1.0/ciFAIR-100.zip",
    "ciFAIR-100.zip",
    "ddc236ab4b12eeb8b20b952614861a33",
    "ciFAIR-100/test",
    "8130dae8d6fc6a436437f0ebdb801df1",
)

NAMED = {
    d.name: d
    for d in [
        NamedDataset("cifair10", "CIFAR-10 train + ciFAIR-10 test (duplicates of training images replaced)", tvd.CIFAR10, CIFAIR10),
        NamedDataset("cifair100", "CIFAR-100 train + ciFAIR-100 test", tvd.CIFAR100, CIFAIR100),
        NamedDataset("cifar10", "CIFAR-10, 50,000 train / 10,000 test, 32x32", tvd.CIFAR10),
        NamedDataset("cifar100", "CIFAR-100, 50,000 train / 10,000 test, 32x32", tvd.CIFAR100),
        NamedDataset("stl10", "STL-10 labelled part, 5,000 train / 8,000 test, 96x96", tvd.STL10, paper_image_size=96),
    ]
}


# STL-10's class_names.txt, for a copy that lacks it (torchvision then leaves .classes unset).
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def default_data_dir() -> Path:
    return Path(os.environ.get("CHIMERAMIX_DATA") or Path.home() / ".cache" / "chimeramix").expanduser()


def _archive_url(ds: NamedDataset) -> tuple[str, str, str]:
    c = ds.train_cls
    return c.url, c.filename, c.tgz_md5


def torchvision_files_present(ds: NamedDataset, root: Path) -> bool:
    c = ds.train_cls
    return all((root / c.base_folder / f).is_file() for f, _ in c.train_list + c.test_list)


def _check_archive(path: Path, md5: str) -> None:
    if path.is_file():
        got = file_digest(path, "md5")
        if got != md5:
            raise ChimeraMixError(
                f"{path} fails its checksum (md5 {got}, expected {md5}): the file is damaged or incomplete; delete it and run again"
            )


def _download(url: str, root: Path, filename: str, md5: str, name: str) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_url(url, str(root), filename=filename, md5=md5)
    except Exception as e:  # urllib, socket and ssl errors all mean the same thing to the user
        raise ChimeraMixError(
            f"{name}: cannot download {url} ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"offline? put {filename} (md5 {md5}) into {root} by hand and run again"
        ) from None
    _check_archive(root / filename, md5)


def _torchvision_split(ds: NamedDataset, root: Path, train: bool, download: bool):
    c = ds.train_cls
    kwargs = {"split": "train" if train else "test"} if issubclass(c, tvd.STL10) else {"train": train}
    try:
        return c(str(root), download=False, **kwargs)
    except RuntimeError:
        pass
    url, filename, md5 = _archive_url(ds)
    _check_archive(root / filename, md5)
    if not (root / filename).is_file():
        if not download:
            what = (f"{ds.name}: the files in {root / c.base_folder} are incomplete or fail their checksums, and {filename} is not in {root}"
                    if (root / c.base_folder).is_dir() else f"{ds.name} is not in {root}")
            raise ChimeraMixError(f"{what}: download {url} (md5 {md5}) into that folder, or allow downloads")
        _download(url, root, filename, md5, ds.name)
    try:
        # The archive is present and verified, so torchvision only extracts it here.
        return c(str(root), download=True, **kwargs)
    except RuntimeError:
        raise ChimeraMixError(
            f"{ds.name}: the files in {root / c.base_folder} fail their checksums even after extracting {filename}; "
            f"delete {root / c.base_folder} and {root / filename} and run again"
        ) from None


def _read_cifair_test(ds: NamedDataset, root: Path, download: bool, classes) -> ImageSet:
    r = ds.test_remote
    member = root / r.member
    if not (member.is_file() and file_digest(member, "md5") == r.member_md5):
        archive = root / r.filename
        _check_archive(archive, r.md5)
        if not archive.is_file():
            if not download:
                raise ChimeraMixError(f"{ds.name} test set is not in {root}: download {r.url} (md5 {r.md5}) into that folder")
            _download(r.url, root, r.filename, r.md5, ds.name)
        with zipfile.ZipFile(archive) as z:
            z.extract(r.member, root)
        if file_digest(member, "md5") != r.member_md5:
            raise ChimeraMixError(f"{member} fails its checksum after extracting {archive}; delete both and run again")
    # A pickle, but only after its md5 matched the published file's, so it is the release's own bytes.
    with open(member, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    labels = batch.get("labels", batch.get("fine_labels"))
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return from_numpy_hwc(data, labels, classes)


def load_named(ds: NamedDataset, root: Path, split: str, download: bool = True) -> ImageSet:
    """Load the train or test split of a named dataset from root, downloading what is missing."""
    root = Path(root)
    train = _torchvision_split(ds, root, True, download) if (split == "train" or ds.test_remote) else None
    if split == "test" and ds.test_remote is not None:
        return _read_cifair_test(ds, root, download, train.classes)
    tv = train if split == "train" else _torchvision_split(ds, root, False, download)
    if isinstance(tv, tvd.STL10):
        return from_numpy_hwc(tv.data.transpose(0, 2, 3, 1), tv.labels, getattr(tv, "classes", STL10_CLASSES))
    return from_numpy_hwc(tv.data, tv.targets, tv.classes)
