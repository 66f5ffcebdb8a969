"""Named datasets on tiny files in the exact on-disk formats torchvision and the ciFAIR release use.

Each test writes its own miniature CIFAR-10 / CIFAR-100 / STL-10 files and ciFAIR zips, then builds a
NamedDataset around a subclass of the real torchvision class whose md5 tables are the tiny files' md5s:
torchvision's own reading code and chimeramix's verification and extraction code run unchanged.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from chimeramix.data import open_source
from chimeramix.data.named import NAMED, NamedDataset, Remote, load_named
from chimeramix.errors import ChimeraMixError

UNREACHABLE = "http://127.0.0.1:9/x.zip"  # the discard port: connection refused at once, no network needed


# ---------------------------------------------------------------------------------------------- file writers


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 with every str/bytes written as a Python 2 `str` (BINSTRING), as the CIFAR batches were made.

    Loaded with encoding='latin1' (as torchvision and chimeramix do) their keys come back as str, exactly
    like the published files'; numpy arrays go through numpy's Python-2 compatible _reconstruct path.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # Python 2's numpy lived at numpy.core; the published files name that module.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def chw_to_rows(images: np.ndarray) -> np.ndarray:
    """N x 3 x 32 x 32 -> N x 3072 (channel planes, row-major), the CIFAR layout."""
    return np.ascontiguousarray(images.reshape(len(images), -1))


def random_images(rng, n: int, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def write_cifar10(root: Path, rng, per_batch: int = 4, n_test: int = 6, label_names=None) -> dict:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns images/labels and md5s."""
    label_names = label_names or ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = random_images(rng, per_batch)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {"batch_label": f"training batch {b} of 5", "labels": y, "data": chw_to_rows(x),
                 "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)]}
        (d / f"data_batch_{b}").write_bytes(py2_pickle(batch))
        train_x.append(x)
        train_y += y
    test_x = random_images(rng, n_test)
    test_y = [int(v) for v in rng.integers(0, 10, n_test)]
    (d / "test_batch").write_bytes(py2_pickle({"batch_label": "testing batch 1 of 1", "labels": test_y,
                                                "data": chw_to_rows(test_x), "filenames": [f"t{i}.png" for i in range(n_test)]}))
    (d / "batches.meta").write_bytes(py2_pickle({"num_cases_per_batch": per_batch, "label_names": label_names, "num_vis": 3072}))
    return {"train_x": np.concatenate(train_x), "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": label_names,
            "md5": {f: md5(d / f) for f in [*(f"data_batch_{b}" for b in range(1, 6)), "test_batch", "batches.meta"]}}


def tiny_cifar10_class(md5s: dict, **extra) -> type:
    """A torchvision CIFAR10 whose md5 tables are those of the tiny files."""
    attrs = {
        "train_list": [[f"data_batch_{b}", md5s[f"data_batch_{b}"]] for b in range(1, 6)],
        "test_list": [["test_batch", md5s["test_batch"]]],
        "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5s["batches.meta"]},
        **extra,
    }
    return type("TinyCIFAR10", (tvd.CIFAR10,), attrs)


def write_cifar100(root: Path, rng, n_train: int = 12, n_test: int = 5) -> dict:
    """cifar-100-python/{train, test, meta} with fine and coarse labels."""
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    fine = [f"fine{i:02d}" for i in range(100)]
    coarse = [f"coarse{i:02d}" for i in range(20)]
    out = {"classes": fine}
    for split, n in (("train", n_train), ("test", n_test)):
        x = random_images(rng, n)
        y = [int(v) for v in rng.integers(0, 100, n)]
        (d / split).write_bytes(py2_pickle({"filenames": [f"{split}{i}.png" for i in range(n)], "batch_label": f"{split} batch 1 of 1",
                                            "fine_labels": y, "coarse_labels": [v // 5 for v in y], "data": chw_to_rows(x)}))
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    (d / "meta").write_bytes(py2_pickle({"fine_label_names": fine, "coarse_label_names": coarse}))
    out["md5"] = {f: md5(d / f) for f in ("train", "test", "meta")}
    return out


def tiny_cifar100_class(md5s: dict) -> type:
    return type("TinyCIFAR100", (tvd.CIFAR100,), {
        "train_list": [["train", md5s["train"]]],
        "test_list": [["test", md5s["test"]]],
        "meta": {"filename": "meta", "key": "fine_label_names", "md5": md5s["meta"]},
    })


def write_cifair_zip(root: Path, folder: str, member: str, batch: dict, filename: str) -> tuple[Path, str, str]:
    """The ciFAIR release layout: <filename> holding <folder>/<member>; returns (zip path, zip md5, member md5)."""
    blob = py2_pickle(batch)
    path = root / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{folder}/", b"")
        z.writestr(f"{folder}/{member}", blob)
    return path, md5(path), hashlib.md5(blob).hexdigest()


def as_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


# ---------------------------------------------------------------------------------------------- CIFAR-10


def test_cifar10_train_and_test_round_trip_exactly(tmp_path):
    tiny = write_cifar10(tmp_path, np.random.default_rng(0))
    ds = NamedDataset("tiny-cifar10", "test", tiny_cifar10_class(tiny["md5"]))

    train = load_named(ds, tmp_path, "train", download=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, as_nchw(tiny["train_x"]))
    assert train.labels.tolist() == tiny["train_y"]
    assert train.classes == tuple(tiny["classes"])
    # image i of the file is image i of the set, pixel (c, y, x) from data[i, c*1024 + y*32 + x]
    row = chw_to_rows(tiny["train_x"])[7]
    assert train.images[7, 2, 5, 9].item() == row[2 * 1024 + 5 * 32 + 9]

    test = load_named(ds, tmp_path, "test", download=False)
    assert torch.equal(test.images, as_nchw(tiny["test_x"]))
    assert test.labels.tolist() == tiny["test_y"]
    assert test.classes == train.classes


def test_cifar10_through_open_source_with_resize(tmp_path):
    """The real Source path (named kind) with --image-size: same labels, resized images."""
    tiny = write_cifar10(tmp_path, np.random.default_rng(1))
    ds = NamedDataset("tiny-cifar10", "test", tiny_cifar10_class(tiny["md5"]))
    NAMED[ds.name] = ds
    try:
        src = open_source("tiny-cifar10", data_dir=tmp_path, image_size=16, download=False)
        train = src.load("train")
        assert train.images.shape == (20, 3, 16, 16)
        assert train.labels.tolist() == tiny["train_y"]
        assert src.load("train") is train  # decoded once per split
        full = open_source("tiny-cifar10", data_dir=tmp_path, download=False).load("train")
        assert torch.equal(full.images, as_nchw(tiny["train_x"]))
    finally:
        del NAMED[ds.name]


def test_cifar10_extracted_from_a_verified_tar_archive(tmp_path):
    """Only the .tar.gz present: its md5 is checked, then torchvision extracts it and the data loads."""
    src_dir = tmp_path / "made"
    tiny = write_cifar10(src_dir, np.random.default_rng(2))
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "tiny-cifar-10.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(src_dir / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    cls = tiny_cifar10_class(tiny["md5"], filename=archive.name, tgz_md5=md5(archive), url=UNREACHABLE)
    ds = NamedDataset("tiny-cifar10", "test", cls)

    train = load_named(ds, root, "train", download=True)  # nothing to download: the archive is here
    assert torch.equal(train.images, as_nchw(tiny["train_x"]))
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_cifar10_tar_archive_with_wrong_md5_is_refused(tmp_path):
    archive = tmp_path / "tiny-cifar-10.tar.gz"
    archive.write_bytes(b"not really a tar archive")
    cls = tiny_cifar10_class({k: "0" * 32 for k in [*(f"data_batch_{b}" for b in range(1, 6)), "test_batch", "batches.meta"]},
                             filename=archive.name, tgz_md5="0123456789abcdef0123456789abcdef", url=UNREACHABLE)
    with pytest.raises(ChimeraMixError, match="checksum") as e:
        load_named(NamedDataset("tiny-cifar10", "test", cls), tmp_path, "train", download=True)
    assert str(archive) in str(e.value) and "\n" not in str(e.value)


def test_damaged_cifar10_batch_with_no_archive_is_an_error_not_a_traceback(tmp_path):
    tiny = write_cifar10(tmp_path, np.random.default_rng(3))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"damaged")
    ds = NamedDataset("tiny-cifar10", "test", tiny_cifar10_class(tiny["md5"]))
    with pytest.raises(ChimeraMixError) as e:
        load_named(ds, tmp_path, "train", download=False)
    msg = str(e.value)
    assert str(tmp_path) in msg and tvd.CIFAR10.url in msg
    assert "checksums" in msg and str(tmp_path / "cifar-10-batches-py") in msg  # says what is wrong with what is there


def test_torchvision_archive_missing_and_unreachable(tmp_path):
    cls = tiny_cifar10_class({k: "0" * 32 for k in [*(f"data_batch_{b}" for b in range(1, 6)), "test_batch", "batches.meta"]},
                             url="http://127.0.0.1:9/tiny-cifar.tar.gz", filename="tiny-cifar.tar.gz", tgz_md5="0" * 32)
    root = tmp_path / "data"
    with pytest.raises(ChimeraMixError) as e:
        load_named(NamedDataset("tiny-cifar10", "test", cls), root, "train", download=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert "http://127.0.0.1:9/tiny-cifar.tar.gz" in msg and str(root) in msg and "tiny-cifar.tar.gz" in msg
    assert not (root / "tiny-cifar.tar.gz").exists()


def test_download_false_and_nothing_present(tmp_path):
    """The real table's cifair10 with an empty folder: a clear error naming the URL and the folder."""
    src = open_source("cifair10", data_dir=tmp_path, download=False)
    with pytest.raises(ChimeraMixError) as e:
        src.load("train")
    msg = str(e.value)
    assert "cifair10" in msg and str(tmp_path) in msg
    assert tvd.CIFAR10.url in msg and tvd.CIFAR10.tgz_md5 in msg
    assert "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing written


# ---------------------------------------------------------------------------------------------- CIFAR-100


def test_cifar100_fine_labels_and_names(tmp_path):
    tiny = write_cifar100(tmp_path, np.random.default_rng(4))
    ds = NamedDataset("tiny-cifar100", "test", tiny_cifar100_class(tiny["md5"]))
    for split in ("train", "test"):
        data = load_named(ds, tmp_path, split, download=False)
        assert torch.equal(data.images, as_nchw(tiny[f"{split}_x"]))
        assert data.labels.tolist() == tiny[f"{split}_y"]  # fine labels, not coarse
        assert data.classes == tuple(tiny["classes"]) and len(data.classes) == 100


# ---------------------------------------------------------------------------------------------- ciFAIR


def _cifair10(tmp_path, seed=5, n=7):
    rng = np.random.default_rng(seed)
    tiny = write_cifar10(tmp_path, rng)
    x = random_images(rng, n)
    y = [int(v) for v in rng.integers(0, 10, n)]
    batch = {"batch_label": "testing batch 1 of 1", "labels": y, "data": chw_to_rows(x), "filenames": [f"c{i}.png" for i in range(n)]}
    path, zmd5, mmd5 = write_cifair_zip(tmp_path, "ciFAIR-10", "test_batch", batch, "ciFAIR-10.zip")
    remote = Remote(UNREACHABLE, "ciFAIR-10.zip", zmd5, "ciFAIR-10/test_batch", mmd5)
    ds = NamedDataset("tiny-cifair10", "test", tiny_cifar10_class(tiny["md5"]), remote)
    return ds, tiny, x, y, path


def test_cifair10_test_set_comes_from_the_zip(tmp_path):
    ds, tiny, x, y, _ = _cifair10(tmp_path)
    assert len(x) != len(tiny["test_x"])  # torchvision's test batch is a different set of images

    test = load_named(ds, tmp_path, "test", download=False)
    assert torch.equal(test.images, as_nchw(x))
    assert test.labels.tolist() == y
    assert test.classes == tuple(tiny["classes"])
    assert (tmp_path / "ciFAIR-10" / "test_batch").is_file()  # extracted next to the archive
    # the training set is still CIFAR-10's
    train = load_named(ds, tmp_path, "train", download=False)
    assert torch.equal(train.images, as_nchw(tiny["train_x"]))


def test_cifair_uses_an_extracted_member_and_repairs_a_damaged_one(tmp_path):
    ds, _, x, _, archive = _cifair10(tmp_path, seed=6)
    load_named(ds, tmp_path, "test", download=False)
    member = tmp_path / "ciFAIR-10" / "test_batch"

    member.write_bytes(member.read_bytes()[:-10])  # damaged member: extracted again from the verified zip
    assert torch.equal(load_named(ds, tmp_path, "test", download=False).images, as_nchw(x))
    assert md5(member) == ds.test_remote.member_md5

    archive.unlink()  # a verified member is enough on its own
    assert torch.equal(load_named(ds, tmp_path, "test", download=False).images, as_nchw(x))


def test_cifair_zip_with_wrong_md5(tmp_path):
    ds, *_ , archive = _cifair10(tmp_path, seed=7)
    with zipfile.ZipFile(archive, "a") as z:  # the zip is no longer the published one
        z.writestr("extra.txt", b"tampered")
    with pytest.raises(ChimeraMixError, match="checksum") as e:
        load_named(ds, tmp_path, "test", download=True)
    assert str(archive) in str(e.value) and ds.test_remote.md5 in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "ciFAIR-10").exists()  # nothing extracted from an unverified archive


def test_cifair_zip_missing_and_url_unreachable(tmp_path):
    ds, *_ , archive = _cifair10(tmp_path, seed=8)
    archive.unlink()
    with pytest.raises(ChimeraMixError) as e:
        load_named(ds, tmp_path, "test", download=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert UNREACHABLE in msg and str(tmp_path) in msg and "ciFAIR-10.zip" in msg


def test_cifair_zip_missing_without_download(tmp_path):
    ds, *_ , archive = _cifair10(tmp_path, seed=9)
    archive.unlink()
    with pytest.raises(ChimeraMixError) as e:
        load_named(ds, tmp_path, "test", download=False)
    assert UNREACHABLE in str(e.value) and str(tmp_path) in str(e.value)


def test_cifair100_test_set_from_its_zip(tmp_path):
    rng = np.random.default_rng(10)
    tiny = write_cifar100(tmp_path, rng)
    x = random_images(rng, 3)
    y = [99, 0, 42]
    batch = {"filenames": ["a.png", "b.png", "c.png"], "batch_label": "testing batch 1 of 1", "fine_labels": y,
             "coarse_labels": [19, 0, 8], "data": chw_to_rows(x)}
    _, zmd5, mmd5 = write_cifair_zip(tmp_path, "ciFAIR-100", "test", batch, "ciFAIR-100.zip")
    ds = NamedDataset("tiny-cifair100", "test", tiny_cifar100_class(tiny["md5"]),
                      Remote(UNREACHABLE, "ciFAIR-100.zip", zmd5, "ciFAIR-100/test", mmd5))
    test = load_named(ds, tmp_path, "test", download=False)
    assert torch.equal(test.images, as_nchw(x))
    assert test.labels.tolist() == y
    assert test.classes[99] == "fine99" and len(test.classes) == 100


def test_real_cifair_table_entries():
    """The shipped table points at the ciFAIR release with the published md5s."""
    r10, r100 = NAMED["cifair10"].test_remote, NAMED["cifair100"].test_remote
    assert r10.url == "https://github.com/cvjena/cifair/releases/download/v1.0/ciFAIR-10.zip"
    assert r10.md5 == "ca08fd390f0839693d3fc45c4e49585f" and r10.member == "ciFAIR-10/test_batch"
    assert r100.url == "https://github.com/cvjena/cifair/releases/download/v1.0/ciFAIR-100.zip"
    assert r100.md5 == "ddc236ab4b12eeb8b20b952614861a33" and r100.member == "ciFAIR-100/test"
    assert NAMED["cifair10"].train_cls is tvd.CIFAR10 and NAMED["cifair100"].train_cls is tvd.CIFAR100
    assert NAMED["cifar10"].test_remote is None and NAMED["stl10"].train_cls is tvd.STL10


# ---------------------------------------------------------------------------------------------- STL-10


def write_stl10(root: Path, rng, n_train: int = 10, n_test: int = 12, n_unlabeled: int = 2) -> dict:
    """stl10_binary/*: images 3 x 96 x 96 stored column-major per channel, labels 1..10 as uint8."""
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    out = {"classes": names}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        x = random_images(rng, n, 96)  # N x C x H x W, the truth
        # the file holds each channel transposed (x fastest is the column index): C x W x H
        (d / f"{split}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        out[f"{split}_x"] = x
        if split != "unlabeled":
            y = rng.integers(0, 10, n)
            y[:2] = [0, 9]
            (d / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
            out[f"{split}_y"] = y.tolist()
    (d / "class_names.txt").write_text("\n".join(names) + "\n")
    out["md5"] = {f: md5(d / f) for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")}
    return out


def test_stl10_layout_labels_and_names(tmp_path):
    tiny = write_stl10(tmp_path, np.random.default_rng(11))
    m = tiny["md5"]
    cls = type("TinySTL10", (tvd.STL10,), {
        "train_list": [["train_X.bin", m["train_X.bin"]], ["train_y.bin", m["train_y.bin"]], ["unlabeled_X.bin", m["unlabeled_X.bin"]]],
        "test_list": [["test_X.bin", m["test_X.bin"]], ["test_y.bin", m["test_y.bin"]]],
    })
    ds = NamedDataset("tiny-stl10", "test", cls, paper_image_size=96)
    for split in ("train", "test"):
        data = load_named(ds, tmp_path, split, download=False)
        assert data.images.shape == (len(tiny[f"{split}_x"]), 3, 96, 96)
        assert torch.equal(data.images, as_nchw(tiny[f"{split}_x"]))  # rows are rows, not columns
        assert data.labels.dtype == torch.int64
        assert data.labels.tolist() == tiny[f"{split}_y"]  # 1..10 on disk -> 0..9
        assert data.classes == tuple(tiny["classes"])
    # an asymmetric check of the orientation: pixel (row 3, column 80) of image 0
    assert data.images[0, 1, 3, 80].item() == tiny["test_x"][0, 1, 3, 80]


def test_stl10_without_class_names_file_uses_the_published_names(tmp_path):
    tiny = write_stl10(tmp_path, np.random.default_rng(12))
    (tmp_path / "stl10_binary" / "class_names.txt").unlink()
    m = tiny["md5"]
    cls = type("TinySTL10", (tvd.STL10,), {
        "train_list": [["train_X.bin", m["train_X.bin"]], ["train_y.bin", m["train_y.bin"]], ["unlabeled_X.bin", m["unlabeled_X.bin"]]],
        "test_list": [["test_X.bin", m["test_X.bin"]], ["test_y.bin", m["test_y.bin"]]],
    })
    data = load_named(NamedDataset("tiny-stl10", "test", cls, paper_image_size=96), tmp_path, "train", download=False)
    assert data.classes == tuple(tiny["classes"])
    assert data.labels.tolist() == tiny["train_y"]
