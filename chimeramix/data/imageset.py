"""The in-memory form every data source returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class ImageSet:
    """uint8 RGB images (N x 3 x H x W, CPU), int64 labels (N) and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    _fingerprint: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 N x 3 x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def fingerprint(self) -> str:
        """sha256 over pixels, labels and class names: equal iff the data is equal."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self.images.numpy()).tobytes())
            h.update(self.labels.to(torch.int64).numpy().tobytes())
            h.update("\n".join(self.classes).encode())
            self._fingerprint.append(h.hexdigest()[:16])
        return self._fingerprint[0]

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def subset(self, indices) -> "ImageSet":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.classes)


def from_numpy_hwc(images: np.ndarray, labels, classes) -> ImageSet:
    """Build from N x H x W x 3 (or N x H x W grey) uint8 arrays."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return ImageSet(t.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.long), tuple(classes))


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can take (Linux MemAvailable); None where it cannot tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(n: int, size: int, where: str, copies: float = 2.0) -> None:
    """Refuse, in one line and before decoding, images at --image-size that cannot fit in memory.

    copies: how many uint8-sized copies loading holds at its peak (decoded list + stacked tensor: 2;
    a float resize of a loaded set: 1 + 4 + 1 = 6).
    """
    from ..errors import ChimeraMixError

    need = int(n * 3 * size * size * copies)
    avail = available_memory()
    if avail is not None and need > 0.8 * avail:
        raise ChimeraMixError(
            f"--image-size {size}: the {n} images of {where} need about {need / 1e9:.1f} GB of memory to load, "
            f"{avail / 1e9:.1f} GB is available: use a smaller --image-size"
        )

