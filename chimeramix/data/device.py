"""The training subset as one tensor on the device, and index sampling without DataLoaders."""

from __future__ import annotations

import torch

from ..errors import ChimeraMixError
from .imageset import ImageSet


def resolve_device(spec: str = "auto") -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ChimeraMixError("--device cuda was asked for but torch sees no CUDA GPU here: use --device cpu or auto")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ChimeraMixError(f"unknown --device '{spec}': use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ChimeraMixError(f"--device {spec} is not supported: use auto, cpu or cuda")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ChimeraMixError(f"--device {spec}: there are only {torch.cuda.device_count()} CUDA devices (cuda:0..)")
    return dev


class DeviceData:
    """uint8 images, labels and optional segment maps resident on one device.

    Batches are drawn from an endless sequence of passes; each pass is a
    permutation that depends only on (seed, pass number), so the images of
    step s are a pure function of s and a resumed run sees the same batches.
    """

    def __init__(self, data: ImageSet, device: torch.device, seed: int, segments: torch.Tensor | None = None):
        self.device = device
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.classes = data.classes
        self.segments = segments.to(device) if segments is not None else None
        self.num_segments = int(segments.max()) + 1 if segments is not None and segments.numel() else None
        self.n = len(data)
        self.seed = seed
        order = torch.argsort(data.labels, stable=True)
        counts = torch.bincount(data.labels, minlength=len(data.classes))
        self._by_class = order.to(device)
        self._counts = counts.to(device)
        self._offsets = (torch.cumsum(counts, 0) - counts).to(device)
        self._rank = torch.empty_like(order)
        self._rank[order] = torch.arange(len(order))  # each image's place in the class-sorted order
        self._rank = self._rank.to(device)
        self._max_count = int(counts.max()) if len(counts) else 0  # on the host: no device sync per draw
        self._passes: dict[int, torch.Tensor] = {}

    def _pass(self, k: int) -> torch.Tensor:
        if k not in self._passes:
            seed = self.seed * 1_000_003 + k
            self._passes = {j: v for j, v in self._passes.items() if j >= k - 1}
            if self.device.type == "cuda":
                # drawn on the GPU: copying a CPU permutation from pageable memory would stall the host every pass
                g = torch.Generator(device=self.device).manual_seed(seed)
                self._passes[k] = torch.rand(self.n, generator=g, device=self.device).argsort()
            else:
                self._passes[k] = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))
        return self._passes[k]

    def batch_indices(self, step: int, batch_size: int) -> torch.Tensor:
        start = step * batch_size
        first, last = start // self.n, (start + batch_size - 1) // self.n
        seq = torch.cat([self._pass(k) for k in range(first, last + 1)])
        off = start - first * self.n
        return seq[off: off + batch_size]

    def of_class(self, classes: torch.Tensor, j: torch.Tensor | int) -> torch.Tensor:
        """Index of the j-th image (clamped to the class size) of each given class."""
        j = torch.as_tensor(j, device=self.device)
        return self._by_class[self._offsets[classes] + torch.minimum(j, self._counts[classes] - 1)]

    def partners(self, idx: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """For each index, a uniformly drawn image of the same class (with replacement, itself included)."""
        y = self.labels[idx]
        j = (torch.rand(idx.shape[0], generator=rng, device=self.device) * self._counts[y]).long()
        j = torch.minimum(j, self._counts[y] - 1)
        return self._by_class[self._offsets[y] + j]

    def parent_indices(self, idx: torch.Tensor, parents: int, rng: torch.Generator) -> list[torch.Tensor]:
        """The K - 1 partners of each index for a composition of `parents` = K images: a pair's partner uniform
        over the class, itself included (the paper's rule); K > 2 parents distinct images (`distinct_partners`)."""
        if parents == 2:
            return [self.partners(idx, rng)]
        return self.distinct_partners(idx, parents - 1, rng)

    def distinct_partners(self, idx: torch.Tensor, count: int, rng: torch.Generator) -> list[torch.Tensor]:
        """For each index, `count` other images of its class, distinct from it and from each other (drawn
        uniformly without replacement): the partners of a composition of count + 1 parents. The class needs
        count + 1 images (config checks refuse --parents above --spc before any work)."""
        y = self.labels[idx]
        width = self._max_count
        pos = torch.arange(width, device=self.device)
        keys = torch.rand(idx.shape[0], width, generator=rng, device=self.device)
        own = self._rank[idx] - self._offsets[y]  # the image's own place within its class
        # places past the class's size and the image itself sort last
        keys = torch.where((pos[None] < self._counts[y][:, None]) & (pos[None] != own[:, None]), keys, torch.full_like(keys, 2.0))
        places = keys.argsort(1)[:, :count]
        return [self._by_class[self._offsets[y] + places[:, j]] for j in range(count)]
