"""Per-class subsets (the paper's protocol) and the split manifest that pins them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import records as R
from ..errors import ChimeraMixError
from ..fileio import write_json
from .imageset import ImageSet


@dataclass(frozen=True)
class Split:
    """Which training images a run uses, and of which data."""

    source: str
    fingerprint: str  # of the full training set the indices point into
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    spc: int
    seed: int
    indices: tuple[int, ...]

    def apply(self, train: ImageSet) -> ImageSet:
        """The subset's images, after checking that `train` is the data this split was drawn from."""
        if train.fingerprint != self.fingerprint:
            raise ChimeraMixError(
                f"the training data of {self.source} has changed since this split was made "
                f"(fingerprint {train.fingerprint}, split made on {self.fingerprint}); start a new run"
            )
        return train.subset(list(self.indices))

    def key(self) -> dict:
        """The fields that must agree between a generator run and a classifier run."""
        return {"source": self.source, "image_size": list(self.image_size), "spc": self.spc, "seed": self.seed,
                "fingerprint": self.fingerprint}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"], d["image_size"], d["indices"] = list(self.classes), list(self.image_size), list(self.indices)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        return cls(d["source"], d["fingerprint"], tuple(d["classes"]), tuple(d["image_size"]), int(d["spc"]), int(d["seed"]),
                   tuple(int(i) for i in d["indices"]))

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Split":
        """A run's split.json, checked field by field (see chimeramix/records.py)."""
        advice = ("the run's split record is damaged: delete it (run.json holds the same split) and run the command "
                  "again, or start the run over with --force")
        return cls.from_dict(R.read_record(path, "a split record", R.SPLIT_FIELDS, R.SPLIT_FIELDS.keys(), advice))

    @classmethod
    def from_run(cls, info: dict, run_file: Path, advice: str) -> "Split":
        """The split a run.json holds (its "split"), every field required."""
        fields = {"split": R.OBJECT, **R.prefixed("split", R.SPLIT_FIELDS)}
        R.check_fields(run_file, info, fields, fields.keys(), advice)
        return cls.from_dict(info["split"])


def check_spc(train: ImageSet, spc: int, source: str = "the data") -> None:
    if spc < 1:
        raise ChimeraMixError(f"--spc must be at least 1 (got {spc})")
    if len(train.classes) < 2:  # a one-class classifier has nothing to learn (and its accuracy would read 100%)
        found = f"only the class '{train.classes[0]}'" if train.classes else "no class"
        raise ChimeraMixError(f"{source} has {found}: a classifier needs at least 2 classes")
    counts = train.class_counts()
    smallest = int(np.argmin(counts))
    if spc > counts[smallest]:
        raise ChimeraMixError(
            f"--spc {spc} is larger than class '{train.classes[smallest]}', which has {counts[smallest]} training images; "
            f"use --spc {counts[smallest]} or less"
        )


def make_split(train: ImageSet, source: str, spc: int, seed: int) -> Split:
    """Per class (in label order), shuffle its indices with one default_rng(seed) and keep the first spc."""
    check_spc(train, spc, source)
    rng = np.random.default_rng(seed)
    labels = train.labels.numpy()
    chosen = []
    for c in range(len(train.classes)):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        chosen.extend(int(i) for i in idx[:spc])
    return Split(source, train.fingerprint, train.classes, train.image_size, spc, seed, tuple(chosen))
