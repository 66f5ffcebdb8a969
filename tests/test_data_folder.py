"""Image folders: root/train/<class>/* and root/test/<class>/*, written here in PNG and JPEG."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from chimeramix.data import open_source
from chimeramix.data.folder import check_folder, load_split
from chimeramix.errors import ChimeraMixError


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def test_loads_sorted_classes_labels_and_exact_pixels(make_image_folder):
    classes = ("zebra", "Mango", "apple")
    root = make_image_folder(classes=classes, train={"zebra": 2, "Mango": 3, "apple": 1}, test=1, size=6)
    arrays = make_image_folder.arrays[root]
    src = open_source(str(root))
    assert src.kind == "folder"
    assert src.classes() == ("Mango", "apple", "zebra")  # sorted as torchvision's ImageFolder sorts

    train = src.load("train")
    assert train.classes == ("Mango", "apple", "zebra")
    assert train.images.shape == (6, 3, 6, 6) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == [0, 0, 0, 1, 2, 2]
    expected = [a for c in train.classes for a in arrays[("train", c)]]  # class order, then file-name order
    for i, a in enumerate(expected):
        assert np.array_equal(hwc(train.images[i]), a), i
    assert train.class_counts() == [3, 1, 2]

    test = src.load("test")
    assert test.classes == train.classes and test.labels.tolist() == [0, 1, 2]
    assert np.array_equal(hwc(test.images[2]), arrays[("test", "zebra")][0])


def test_ignores_hidden_and_non_image_files(make_image_folder):
    root = make_image_folder(classes=("a", "b"), train=2, test=1)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / "a" / "._000.png").write_bytes(b"resource fork, not a png")
    (root / "train" / ".cache").mkdir()
    (root / "train" / "README.md").write_text("hi")
    train = load_split(root, "train")
    assert train.classes == ("a", "b") and len(train) == 4


def test_rgb_conversion_of_grey_rgba_palette_and_jpeg(tmp_path, write_image):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    d = root / "train" / "c"
    grey = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    rgba = rng.integers(0, 256, (5, 5, 4), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    write_image(d / "0_grey.png", grey)
    write_image(d / "1_rgba.png", rgba)
    palette_img = Image.fromarray(rgb).quantize(colors=7)
    palette_img.save(d / "2_palette.png")
    yy, xx = np.mgrid[0:5, 0:5]
    smooth = np.stack([yy * 40 + 20, xx * 40 + 30, np.full((5, 5), 128)], axis=-1).astype(np.uint8)
    write_image(d / "3_photo.JPG", smooth, quality=95)  # upper-case suffix counts too
    write_image(d / "4_photo.jpeg", grey)  # grey JPEG
    bits = np.zeros((5, 5), dtype=bool)
    bits[1:3] = True
    Image.fromarray(bits).save(d / "5_bilevel.png")
    write_image(root / "test" / "c" / "0.png", rgb)

    data = load_split(root, "train")
    assert data.images.shape == (6, 3, 5, 5)
    x = [hwc(data.images[i]) for i in range(6)]
    assert np.array_equal(x[0], np.repeat(grey[..., None], 3, axis=-1))
    assert np.array_equal(x[1], rgba[..., :3])  # alpha dropped, colour kept
    assert np.array_equal(x[2], np.asarray(palette_img.convert("RGB")))  # palette indices looked up
    assert len({tuple(p) for p in x[2].reshape(-1, 3)}) > 1
    with Image.open(d / "3_photo.JPG") as im:
        assert np.array_equal(x[3], np.asarray(im.convert("RGB")))
    assert np.abs(x[3].astype(int) - smooth).mean() < 8  # lossy, but the same picture
    assert np.array_equal(x[4][..., 0], x[4][..., 1]) and np.array_equal(x[4][..., 1], x[4][..., 2])
    assert np.array_equal(x[5][..., 0], np.where(bits, 255, 0))


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path, write_image):
    a16 = np.array([[0, 257, 32768], [65535, 1000, 60000]], dtype=np.uint16)
    write_image(tmp_path / "d" / "train" / "c" / "x.png", a16)
    with Image.open(tmp_path / "d" / "train" / "c" / "x.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    data = load_split(tmp_path / "d", "train")
    expected = np.round(a16.astype(float) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(data.images[0, 0].numpy(), expected)
    assert np.array_equal(data.images[0, 2].numpy(), expected)


def test_mixed_sizes_need_image_size(tmp_path, write_image):
    rng = np.random.default_rng(1)
    root = tmp_path / "data"
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    write_image(root / "train" / "a" / "0.png", small)
    write_image(root / "train" / "a" / "1.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    write_image(root / "train" / "b" / "0.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    write_image(root / "test" / "a" / "0.png", small)
    write_image(root / "test" / "b" / "0.png", small)

    with pytest.raises(ChimeraMixError) as e:
        load_split(root, "train")
    msg = str(e.value)
    assert "--image-size" in msg and "8x8" in msg and "12x10" in msg and "1.png" in msg

    data = open_source(str(root), image_size=8).load("train")
    assert data.images.shape == (3, 3, 8, 8)
    assert np.array_equal(hwc(data.images[0]), small)  # already 8x8: untouched
    big = load_split(root, "train", image_size=16)
    assert big.images.shape == (3, 3, 16, 16)


def test_image_size_resizes_uniform_folder(make_image_folder):
    root = make_image_folder(train=2, test=2, size=8)
    data = open_source(str(root), image_size=12).load("test")
    assert data.images.shape == (4, 3, 12, 12)
    assert data.images.float().std() > 10  # real content, not a constant


@pytest.mark.parametrize("content", [b"", b"definitely not a png", "truncated"])
def test_corrupt_image_names_the_file(make_image_folder, content):
    root = make_image_folder(classes=("a", "b"), train=3, test=1)
    bad = root / "train" / "b" / "001.png"
    if content == "truncated":
        content = bad.read_bytes()[:60]
    bad.write_bytes(content)
    src = open_source(str(root))  # layout is fine; decoding finds the bad file
    with pytest.raises(ChimeraMixError) as e:
        src.load("train")
    msg = str(e.value)
    assert str(bad) in msg and "\n" not in msg
    assert src.load("test").images.shape[0] == 2  # the other split is still readable


def test_decompression_bomb_is_an_error_naming_the_file(tmp_path):
    """A PNG header claiming 30000 x 30000 pixels: PIL refuses it at open; that must not be a traceback."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    bad = tmp_path / "d" / "train" / "c" / "huge.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(png)
    with pytest.raises(ChimeraMixError) as e:
        load_split(tmp_path / "d", "train")
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("missing", ["train", "test"])
def test_missing_split_folder(make_image_folder, missing):
    root = make_image_folder()
    for p in sorted((root / missing).rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / missing).rmdir()
    with pytest.raises(ChimeraMixError) as e:
        open_source(str(root))
    msg = str(e.value)
    assert f"no {missing}/ folder" in msg and str(root) in msg


def test_not_a_folder_and_not_there(tmp_path):
    with pytest.raises(ChimeraMixError, match="does not exist"):
        open_source(str(tmp_path / "nowhere"))
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(ChimeraMixError, match="not a folder"):
        open_source(str(f))


def test_split_folder_without_class_folders(make_image_folder):
    root = make_image_folder(classes=("a",), train=1, test=1)
    (root / "test" / "a" / "000.png").rename(root / "test" / "loose.png")
    (root / "test" / "a").rmdir()
    with pytest.raises(ChimeraMixError, match="no class folders") as e:
        check_folder(root)
    assert str(root / "test") in str(e.value)


def test_empty_class_folder(make_image_folder):
    root = make_image_folder(classes=("a", "b"), train={"a": 2, "b": 0}, test=1)
    (root / "train" / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(ChimeraMixError) as e:
        open_source(str(root))
    msg = str(e.value)
    assert str(root / "train" / "b") in msg and "no images" in msg


def test_test_classes_differ_from_train(make_image_folder, write_image):
    root = make_image_folder(classes=("a", "b", "c"), train=1, test=1)
    for f in (root / "test" / "c").iterdir():
        f.unlink()
    (root / "test" / "c").rmdir()
    write_image(root / "test" / "d" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ChimeraMixError) as e:
        open_source(str(root))
    msg = str(e.value)
    assert "differ" in msg and "'c'" in msg and "'d'" in msg


def test_thread_count_does_not_change_the_result(make_image_folder):
    root = make_image_folder(classes=("a", "b", "c"), train=5, test=1, size=4)
    one = load_split(root, "train", workers=1)
    many = load_split(root, "train", workers=4)
    assert torch.equal(one.images, many.images) and torch.equal(one.labels, many.labels)
    assert one.fingerprint == many.fingerprint
