"""Iterative diversity sampling (Cavusoglu et al. 2021, "Increasing Data Diversity with Iterative Sampling to
Improve Performance") over a pool of ChimeraMix compositions and classical augmentations.

The selection works on plain tensors (`iterative_selection`, `class_budgets`, `mean_nn_distance`): N x D embeddings,
labels, which rows are real. It starts from every real image plus random pool rows up to each class's budget; each
iteration takes the K most similar same-class pairs (Euclidean distance; pairs of two real images are never
candidates), drops the pool member of each pair (of two pool members the one that is also closer to the rest) and
tries replacements from the class's unused pool. A replacement is accepted only when the mean nearest-neighbour
distance (each selected image to its nearest selected image of its class, averaged) does not fall, so that mean
never falls across iterations; a rejected candidate goes back to the end of the queue. It stops after `iterations`
iterations, or when one raised the mean by no more than `min_gain` of its value.

`curate_dataset` is the I/O around it: the split (--data, --spc, --seed), a finished generator run of that split
(the pool's compositions, drawn and rendered as `export` does), a finished classifier run (the embeddings: its
penultimate, global-average-pooled features, as `fid` reads them) and the output folder (as `export` writes one:
train/<class>/, the source's test set, manifest.json; plus report.md and changes.png).

Favouring difficult classes needs per-class F1 on images the classifier did not train on. At spc 10 there is no
labelled image to spare outside the subset, and the test set is never used (it is only copied into the output
for `fit-classifier --data DIR`, as `export` does; no test image is embedded, scored or selected), so the
validation split is carved from the real subset through the classifier run's own split: a classifier trained
with a smaller --spc (same data,
seed and image size) trained on the first spc' images per class of the same seeded shuffle (`make_split` takes
prefixes), so the subset's other spc - spc' images per class are real images it never saw. Those are the
validation split. With a classifier trained on the whole subset there is none, and --favour-difficult is refused.
With a few validation images per class the F1 values are coarse (steps of about 1 / (spc - spc')); they only set
how the extra images are shared out.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import __version__
from .config import SEG_VIEWS, GeneratorConfig, generator_from_record
from .data import make_split, open_source
from .data.device import resolve_device
from .errors import ChimeraMixError
from .fileio import file_digest, write_json, write_text
from .masks import check_choice
from .outfolder import (check_class_name, check_out, count_test_set, finished_manifest, make_temp, plan_test_set,
                        publish, recover, side, write_png, write_test_set)
from .progress import SILENT, Progress
from .runs import versions

KIND = "curate"
REPORT = "report.md"
CHANGES = "changes.png"
SHOWN_SWAPS = 16
CLASSICAL_OPS = ("flip", "rotate", "blur", "noise", "pixelate")
EMBED_BATCH = 256


# ---------------------------------------------------------------- selection on embeddings

def mean_nn_distance(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over rows of the Euclidean distance to the nearest other row of the same label (float64); rows alone
    in their class do not count."""
    e, labels = embeddings.double(), torch.as_tensor(labels)
    total, count = 0.0, 0
    for c in labels.unique().tolist():
        x = e[labels == c]
        if len(x) < 2:
            continue
        d = torch.cdist(x, x).fill_diagonal_(float("inf"))
        total += float(d.min(1).values.sum())
        count += len(x)
    return total / count if count else 0.0


class _ClassState:
    """One class's selected rows and their pairwise distances (inf on the diagonal), kept up to date per swap."""

    def __init__(self, rows: list[int], emb: torch.Tensor, real: torch.Tensor):
        self.rows = list(rows)
        x = emb[self.rows]
        self.dist = torch.cdist(x, x).fill_diagonal_(float("inf"))
        self.fixed = real[self.rows].clone()
        self.sum = self._nn_sum(self.dist)

    def _nn_sum(self, dist: torch.Tensor) -> float:
        return float(dist.min(1).values.sum()) if len(self.rows) > 1 else 0.0

    @property
    def count(self) -> int:
        return len(self.rows) if len(self.rows) > 1 else 0

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Upper-triangle pairs (positions i < j) that are not both real, with their distances."""
        i, j = torch.triu_indices(len(self.rows), len(self.rows), 1)
        keep = ~(self.fixed[i] & self.fixed[j])
        return i[keep], j[keep], self.dist[i[keep], j[keep]]

    def trial(self, pos: int, row: int, emb: torch.Tensor) -> tuple[float, torch.Tensor]:
        """The nearest-neighbour sum and distances if position `pos` held `row` instead."""
        d = self.dist.clone()
        new = torch.cdist(emb[row][None], emb[self.rows])[0]
        new[pos] = float("inf")
        d[pos, :], d[:, pos] = new, new
        return self._nn_sum(d), d

    def accept(self, pos: int, row: int, nn_sum: float, dist: torch.Tensor) -> None:
        self.rows[pos], self.sum, self.dist = row, nn_sum, dist


@dataclass
class Selection:
    """What `iterative_selection` chose and how it got there."""

    selected: list[int]  # rows, sorted
    history: list[float]  # mean NN distance: [start, after iteration 1, ...]
    swaps: list[dict] = field(default_factory=list)  # iteration, removed, partner, added, distance (of the pair)
    rejected: list[int] = field(default_factory=list)  # replacements refused per iteration
    initial: list[int] = field(default_factory=list)  # the starting rows
    stop: str = ""

    @property
    def iterations(self) -> int:
        return len(self.history) - 1


def iterative_selection(embeddings: torch.Tensor, labels, real, budgets: list[int], *, k: int = 10,
                        iterations: int = 50, min_gain: float = 1e-3, tries: int = 3, seed: int = 0,
                        initial: list[int] | None = None, progress: Progress = SILENT) -> Selection:
    """Pick budgets[c] rows of class c (all its real rows, the rest from its pool rows) that are far apart.

    embeddings: N x D; labels: N class indices; real: N bools (real rows are always kept, never dropped);
    initial: the pool rows to start from (default: a seeded random draw per class); see the module's docstring.
    """
    emb = torch.as_tensor(embeddings).double()
    labels = torch.as_tensor(labels).long()
    real = torch.as_tensor(real).bool()
    n_classes = len(budgets)
    rng = torch.Generator().manual_seed(int(seed))
    chosen = set(initial) if initial is not None else None
    states, queues = [], []
    for c in range(n_classes):
        rows = torch.nonzero(labels == c).flatten()
        reals = rows[real[rows]].tolist()
        pool = rows[~real[rows]]
        extra = budgets[c] - len(reals)
        if extra < 0 or extra > len(pool):
            raise ChimeraMixError(f"class {c} has {len(reals)} real and {len(pool)} pool images: it cannot hold {budgets[c]}")
        pool = pool[torch.randperm(len(pool), generator=rng)].tolist()
        if chosen is not None:
            start = [r for r in pool if r in chosen]
            if len(start) != extra:
                raise ValueError(f"initial holds {len(start)} pool rows of class {c}, its budget needs {extra}")
            rest = [r for r in pool if r not in chosen]
        else:
            start, rest = pool[:extra], pool[extra:]
        states.append(_ClassState(reals + start, emb, real))
        queues.append(deque(rest))
    count = sum(s.count for s in states)

    def mean(sums: list[float]) -> float:
        return sum(sums) / count if count else 0.0

    sums = [s.sum for s in states]
    sel = Selection([], [mean(sums)], initial=sorted(r for s in states for r in s.rows if not real[r]))
    progress.start("curate", iterations)
    for it in range(1, iterations + 1):
        before = mean(sums)
        candidates = []
        for c, s in enumerate(states):
            i, j, d = s.pairs()
            near = torch.topk(d, min(k, len(d)), largest=False).indices  # the K nearest overall are among these
            candidates += [(float(d[n]), c, int(i[n]), int(j[n])) for n in near.tolist()]
        if not candidates:
            sel.stop = "no pairs to break (every class holds only real images)"
            break
        candidates.sort()
        touched: set[tuple[int, int]] = set()
        rejected = 0
        for dist, c, a, b in candidates[:k]:
            s = states[c]
            if (c, a) in touched or (c, b) in touched:
                continue  # one side was already replaced this iteration: the pair is gone
            pos, partner = _drop(s, a, b)
            for _ in range(min(tries, len(queues[c]))):
                row = queues[c].popleft()
                nn_sum, d = s.trial(pos, row, emb)
                trial = sums.copy()
                trial[c] = nn_sum
                if sum(trial) >= sum(sums):  # the same sum as mean() divides: the recorded mean cannot fall
                    sel.swaps.append({"iteration": it, "removed": s.rows[pos], "partner": s.rows[partner], "added": row,
                                      "distance": dist})
                    s.accept(pos, row, nn_sum, d)
                    sums = trial
                    touched.add((c, pos))
                    break
                rejected += 1
                queues[c].append(row)
        sel.history.append(mean(sums))
        sel.rejected.append(rejected)
        progress.update("curate", it, {"mean NN": sel.history[-1]})
        if sel.history[-1] - before <= min_gain * abs(before):
            sel.stop = (f"iteration {it} raised the mean NN distance by {sel.history[-1] - before:.4g}, "
                        f"no more than --min-gain {min_gain:g} of it")
            break
    else:
        sel.stop = f"{iterations} iterations"
    progress.end("curate")
    sel.selected = sorted(r for s in states for r in s.rows)
    return sel


def _drop(s: _ClassState, a: int, b: int) -> tuple[int, int]:
    """Which of the pair (positions) to drop, and its partner: never a real row; of two pool rows the one nearer
    to the rest of the class (its nearest neighbour other than the partner), i.e. the more redundant one."""
    if s.fixed[a]:
        return b, a
    if s.fixed[b]:
        return a, b
    rest_a = torch.cat([s.dist[a, :b], s.dist[a, b + 1:]]).min() if len(s.rows) > 2 else 0.0
    rest_b = torch.cat([s.dist[b, :a], s.dist[b, a + 1:]]).min() if len(s.rows) > 2 else 0.0
    return (a, b) if rest_a <= rest_b else (b, a)


def class_budgets(spc: int, size: int, n_classes: int, f1: list[float] | None = None) -> list[int]:
    """Images per class: `size` each; with f1, the n_classes * (size - spc) non-real images are shared in
    proportion to 2 - F1 (a class at F1 0 gets twice the share of one at F1 1), largest remainder first."""
    if f1 is None:
        return [size] * n_classes
    extra = n_classes * (size - spc)
    w = torch.tensor([2.0 - float(f) for f in f1], dtype=torch.float64)
    raw = extra * w / w.sum()
    base = raw.floor().long()
    left = extra - int(base.sum())
    # the remainders, ties to the lower F1, then the lower label
    order = sorted(range(n_classes), key=lambda c: (-float(raw[c] - base[c]), float(f1[c]), c))
    for c in order[:left]:
        base[c] += 1
    return [spc + int(b) for b in base]


# ---------------------------------------------------------------- classical augmentations

def classical_augment(image: torch.Tensor, op: str, param: float) -> torch.Tensor:
    """uint8 3 x H x W -> uint8: flip (param unused), rotate (degrees, reflected border), blur (Gaussian sigma),
    noise (Gaussian std on 0-255; its draw is seeded by int(param * 1e6)), pixelate (block size in pixels)."""
    import kornia

    x = image[None].float()
    if op == "flip":
        x = x.flip(-1)
    elif op == "rotate":
        x = kornia.geometry.transform.rotate(x, torch.tensor([float(param)]), padding_mode="reflection")
    elif op == "blur":
        x = kornia.filters.gaussian_blur2d(x, (5, 5), (float(param), float(param)), border_type="reflect")
    elif op == "noise":
        g = torch.Generator().manual_seed(int(param * 1e6))
        x = x + torch.randn(x.shape, generator=g) * float(param)
    elif op == "pixelate":
        h, w = x.shape[-2:]
        b = int(param)
        x = F.interpolate(F.interpolate(x, size=(max(h // b, 1), max(w // b, 1)), mode="area"), size=(h, w), mode="nearest")
    else:
        raise ValueError(f"unknown op {op}")
    return x[0].round().clamp(0, 255).to(torch.uint8)


def _classical_entries(split, subset, classes: list[str], per_class: int, seed: int) -> list[dict]:
    """Per class, per_class (parent, op, parameter) draws, each a function of (seed, class, k)."""
    from .export import _derive

    entries = []
    for label, name in enumerate(classes):
        members = torch.nonzero(subset.labels == label).flatten().tolist()
        for k in range(per_class):
            g = torch.Generator().manual_seed(_derive(seed, 3, label, k))
            s = members[int(torch.randint(len(members), (1,), generator=g))]
            op = CLASSICAL_OPS[int(torch.randint(len(CLASSICAL_OPS), (1,), generator=g))]
            u = float(torch.rand(1, generator=g))
            param = {"flip": 0.0, "rotate": -15 + 30 * u, "blur": 0.5 + u, "noise": 4 + 8 * u, "pixelate": 2.0 + (u > 0.5)}[op]
            entries.append({"file": f"train/{name}/aug_{k:05d}.png", "class": name, "label": label, "kind": "augmented",
                            "k": k, "parents": {"train": [split.indices[s]], "subset": [s]}, "op": op,
                            "param": round(param, 6)})
    return entries


# ---------------------------------------------------------------- the whole curation

@dataclass
class CurateResult:
    out: Path
    counts: dict  # kind -> images in train/ (real, generated, augmented), and test
    per_class: list[int]
    history: list[float]
    stop: str
    already_finished: bool = False

    @property
    def manifest(self) -> Path:
        return self.out / "manifest.json"

    @property
    def report(self) -> Path:
        return self.out / REPORT

    @property
    def changes(self) -> Path:
        return self.out / CHANGES


def _classifier_split(info: dict, split, run: Path) -> list[int]:
    """Refuse a classifier of another split (naming the fields); its training rows (subset positions)."""
    theirs = info.get("split", {})
    diff = [f"{k} {theirs.get(k)!r} vs {v!r}" for k, v in split.key().items() if k != "spc" and theirs.get(k) != v]
    if int(theirs.get("spc", 0)) > split.spc:
        diff.append(f"spc {theirs.get('spc')!r} vs {split.spc!r} (it may be smaller, never larger)")
    pos = {i: p for p, i in enumerate(split.indices)}
    trained = [pos.get(int(i)) for i in theirs.get("indices", [])]
    if not diff and (not trained or None in trained):
        diff.append("indices (its images are not all in this subset)")
    if diff:
        raise ChimeraMixError(
            f"the classifier in {run} was trained on another split ({'; '.join(diff)}, classifier vs this curation): "
            "train it with the same --data, --seed and --image-size, and --spc at most this one"
        )
    return sorted(trained)


def curate_dataset(data: str, spc: int, generator: str | Path, classifier: str | Path, size: int, out: str | Path, *,
                   seed: int = 0, pool: int | None = None, classical_share: float = 0.25, k: int = 10,
                   iterations: int = 50, min_gain: float = 1e-3, tries: int = 3, favour_difficult: bool = False,
                   seg_view: str = "classifier", data_dir: str | Path | None = None, device: str = "auto",
                   force: bool = False, progress: Progress = SILENT) -> CurateResult:
    """Curate `size` training images per class (the real subset plus pool images) into `out`; see the module's
    docstring. pool: candidates per class (default 4 x the largest number of non-real images a class gets), of which
    a `classical_share` are classical augmentations of real images and the rest ChimeraMix compositions."""
    from .export import config_hash, finished_generator
    from .train.classifier import WEIGHTS_FILE as CLF_WEIGHTS
    from .train.classifier import check_generator_split, finished_classifier
    from .train.generator import WEIGHTS_FILE as GEN_WEIGHTS

    for name, value, low in (("--spc", spc, 1), ("--seed", seed, 0), ("--k", k, 1), ("--iterations", iterations, 0),
                             ("--tries", tries, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ChimeraMixError(f"{name} must be a whole number of at least {low} (got {value})")
    if isinstance(size, bool) or not isinstance(size, int) or size < spc:
        raise ChimeraMixError(f"--size {size} is smaller than --spc {spc}: the curated set keeps every real image, "
                              f"so use --size {spc} or more")
    if not 0 <= classical_share <= 1:
        raise ChimeraMixError(f"--classical-share must be between 0 and 1 (got {classical_share})")
    if not min_gain >= 0:
        raise ChimeraMixError(f"--min-gain must be 0 or more (got {min_gain})")
    if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 0):
        raise ChimeraMixError(f"--pool must be a whole number of at least 0 (got {pool})")
    check_choice("--seg-view", seg_view, SEG_VIEWS)
    gen_dir, clf_dir = Path(generator).expanduser(), Path(classifier).expanduser()
    gen_info = finished_generator(gen_dir)
    clf_info = finished_classifier(clf_dir)
    cfg = gen_info["config"]  # as stored: what the manifest's config hash is of
    gen = generator_from_record(cfg)

    source = open_source(data, data_dir or gen.data_dir, gen.image_size)
    train = source.load("train")
    split = make_split(train, source.name, spc, seed)
    check_generator_split(gen_info, split.key(), gen_dir)
    trained = _classifier_split(clf_info, split, clf_dir)
    classes = list(train.classes)
    if list(clf_info.get("result", {}).get("classes", classes)) != classes:
        raise ChimeraMixError(f"the classifier in {clf_dir} has other classes than {source.name}: train it on this data")
    for c in classes:
        check_class_name(c, "curated")
    validation = [p for p in range(len(split.indices)) if p not in set(trained)]
    if favour_difficult and not validation:
        raise ChimeraMixError(
            f"--favour-difficult needs real images the classifier did not train on, and the classifier in {clf_dir} "
            f"trained on the whole subset (spc {spc}): train one with a smaller --spc at the same --seed (its images are "
            "the first of each class's shuffle; the rest of the subset is the validation split), or drop --favour-difficult"
        )
    request = {
        "data": source.name, "spc": spc, "seed": seed, "size": size,
        "generator": str(gen_dir.resolve()), "generator_sha256": file_digest(gen_dir / GEN_WEIGHTS),
        "classifier": str(clf_dir.resolve()), "classifier_sha256": file_digest(clf_dir / CLF_WEIGHTS),
        "pool": pool, "classical_share": classical_share, "k": k, "iterations": iterations, "min_gain": min_gain,
        "tries": tries, "favour_difficult": bool(favour_difficult), "seg_view": seg_view,
    }
    out = check_out(Path(out), "a curation")
    tmp, old = side(out, "partial", KIND), side(out, "old", KIND)
    recover(out, tmp, old)
    manifest = finished_manifest(out, KIND, request, force)
    if manifest is not None:
        return CurateResult(out, manifest["counts"], manifest["per_class"], manifest["history"], manifest["stop"],
                            already_finished=True)

    from .fid import load_classifier_embedding

    dev = resolve_device(device)
    subset = split.apply(train)
    clf = load_classifier_embedding(clf_dir, dev)
    f1 = _validation_f1(clf, subset, validation, classes, dev) if favour_difficult else None
    budgets = class_budgets(spc, size, len(classes), f1)
    most = max(budgets) - spc
    pool = 4 * most if pool is None else pool
    # first what cannot fit at all (a huge --size), then a pool too small to fill it
    _check_fits(out, len(classes), spc, max(pool, most), budgets, train.image_size, clf.dim)
    if pool < most:
        raise ChimeraMixError(f"--pool {pool} is smaller than the {most} non-real images the largest class gets: "
                              f"use --pool {most} or more (several times more leaves room to choose)")
    n_aug = round(pool * classical_share)
    n_gen = pool - n_aug

    entries, images, mask_info = _build_pool(gen_dir, gen, split, subset, train, classes, n_gen, n_aug, seed, seg_view,
                                             dev, progress)
    features = _embed(clf, images, dev, progress)
    labels = torch.tensor([e["label"] for e in entries])
    is_real = torch.tensor([e["kind"] == "real" for e in entries])
    sel = iterative_selection(features, labels, is_real, budgets, k=k, iterations=iterations, min_gain=min_gain,
                              tries=tries, seed=seed, progress=progress)

    test_files = plan_test_set(source, gen)
    n_test = count_test_set(source, test_files)
    make_temp(tmp, out)
    try:
        added_at = {s["added"]: s["iteration"] for s in sel.swaps}
        kept = [{**entries[r], "added_at": added_at.get(r, 0)} for r in sel.selected]
        progress.start("write", len(kept) + n_test)
        for i, r in enumerate(sel.selected):
            write_png(tmp / entries[r]["file"], images[r])
            progress.update("write", i + 1)
        test_from = write_test_set(tmp / "test", source, test_files, lambda j: progress.update("write", len(kept) + j))
        progress.end("write")
        counts = {kind: sum(e["kind"] == kind for e in kept) for kind in ("real", "generated", "augmented")}
        counts["test"] = n_test
        per_class = [sum(e["label"] == c for e in kept) for c in range(len(classes))]
        removed = [{**entries[s["removed"]], "removed_at": s["iteration"], "partner": entries[s["partner"]]["file"],
                    "replaced_by": entries[s["added"]]["file"], "distance": s["distance"]} for s in sel.swaps]
        manifest = {
            "kind": KIND, "format": 1, "chimeramix": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "request": request,
            "method": "iterative diversity sampling (Cavusoglu et al. 2021): K most similar pairs per iteration, "
                      "a replacement accepted only when the mean nearest-neighbour distance does not fall",
            "generator": {"run": request["generator"], "sha256": request["generator_sha256"], "config_sha256": config_hash(cfg),
                          "split": split.key(), "preset": cfg.get("preset"), "steps": gen_info.get("step")},
            "classifier": {"run": request["classifier"], "sha256": request["classifier_sha256"],
                           "arch": clf_info["config"].get("arch"), "method": clf_info["config"].get("method"),
                           "spc": clf_info["split"].get("spc"), "feature_dim": clf.dim},
            "source": {"spec": data, "name": source.name, "kind": source.kind, "image_size": list(train.image_size),
                       "classes": classes},
            "mask": mask_info, "seed": seed, "device": str(dev),
            "pool": {"per_class": pool, "generated": n_gen, "augmented": n_aug},
            "validation": {"subset": validation, "train": [split.indices[p] for p in validation],
                           "f1": f1, "used": bool(favour_difficult)},
            "budgets": budgets, "per_class": per_class, "counts": counts,
            "history": sel.history, "rejected": sel.rejected, "stop": sel.stop, "iterations": sel.iterations,
            "test": {"from": test_from, "count": n_test},
            "versions": versions(),
            "files": kept, "removed": removed,
        }
        write_json(tmp / "manifest.json", manifest)
        write_text(tmp / REPORT, _report(manifest))
        _save_changes(tmp / CHANGES, sel.swaps, images)
        publish(tmp, out, old)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # Ctrl-C or an error: no half curation stays behind
        raise
    return CurateResult(out, counts, per_class, sel.history, sel.stop)


def _check_fits(out: Path, n_classes: int, spc: int, pool: int, budgets: list[int], image_size, dim: int) -> None:
    """Refuse, before the pool is drawn, a curation whose pool cannot fit in memory or whose folder cannot fit on
    the disk: the pool's images, entries and features, and each class's distance matrix (with the copy a trial
    makes), as low estimates."""
    from .memory import ENTRY_BYTES, check_memory
    from .outfolder import check_disk

    rows = n_classes * (spc + pool)
    need = rows * (3 * int(image_size[0]) * int(image_size[-1]) + ENTRY_BYTES + 8 * dim)
    need += sum(2 * 8 * b * b for b in budgets)
    check_memory(f"a pool of {pool:,} images per class for --size {max(budgets)}", need, torch.device("cpu"),
                 "lower --size or --pool")
    check_disk(out, sum(budgets), image_size, "lower --size or choose an --out on a larger disk")


def _validation_f1(clf, subset, validation: list[int], classes: list[str], dev) -> list[float]:
    """Per-class F1 of the classifier on the subset images at positions `validation` (ones it did not train on)."""
    from .report import classification_metrics

    imgs = subset.images[validation]
    pred = torch.cat([clf.logits(list(imgs[i: i + EMBED_BATCH]), dev).argmax(1).cpu() for i in range(0, len(imgs), EMBED_BATCH)])
    return [r["f1"] for r in classification_metrics(pred, subset.labels[validation], classes)["per_class"]]


def _build_pool(gen_dir: Path, cfg: GeneratorConfig, split, subset, train, classes: list[str], n_gen: int, n_aug: int, seed: int,
                seg_view: str, dev, progress: Progress) -> tuple[list[dict], list[torch.Tensor], dict]:
    """Manifest entries and uint8 images of the real subset, then per class n_gen compositions (drawn and rendered
    as `export` does, so a file equals export's of the same seed and k) and n_aug classical augmentations."""
    from .export import BATCH, plan_compositions, real_entry, render_compositions
    from .train.generator import load_generator

    gen_entries, mask_info = plan_compositions(cfg, split, subset, classes, n_gen, seed, seg_view, progress)
    aug_entries = _classical_entries(split, subset, classes, n_aug, seed)
    reals = [real_entry(split, subset, classes, s) for s in range(len(subset))]
    G = load_generator(gen_dir, dev)[0] if gen_entries else None
    progress.message(f"curate: a pool of {len(gen_entries)} compositions and {len(aug_entries)} augmentations "
                     f"besides {len(reals)} real images, on {dev}")
    images: list[torch.Tensor] = [train.images[e["parents"]["train"][0]] for e in reals]
    progress.start("pool", len(gen_entries) + len(aug_entries))
    for b in range(0, len(gen_entries), BATCH):
        images += list(render_compositions(G, train.images, gen_entries[b: b + BATCH], mask_info["feature_size"],
                                           mask_info["work_size"], dev))
        progress.update("pool", len(images) - len(reals))
    for e in aug_entries:
        images.append(classical_augment(subset.images[e["parents"]["subset"][0]], e["op"], e["param"]))
        progress.update("pool", len(images) - len(reals))
    progress.end("pool")
    return reals + gen_entries + aug_entries, images, mask_info


def _embed(clf, images: list[torch.Tensor], dev, progress: Progress) -> torch.Tensor:
    """N x dim float64 penultimate features (CPU)."""
    progress.start("embed", len(images))
    feats = []
    for i in range(0, len(images), EMBED_BATCH):
        feats.append(clf(images[i: i + EMBED_BATCH], dev).double().cpu())
        progress.update("embed", min(i + EMBED_BATCH, len(images)))
    progress.end("embed")
    return torch.cat(feats)


def _save_changes(path: Path, swaps: list[dict], images: list[torch.Tensor]) -> None:
    """A row per swap (the first SHOWN_SWAPS): removed image, the one it was too close to, what replaced it."""
    from .plots import save_grid

    shown = swaps[:SHOWN_SWAPS]
    if not shown:
        return
    cols = [torch.stack([images[s[key]] for s in shown]).float() / 255 for key in ("removed", "partner", "added")]
    save_grid(path, cols)


def _report(m: dict) -> str:
    r = m["request"]
    lines = [
        f"# Curation: {m['source']['name']} (spc {r['spc']}, seed {r['seed']}), {r['size']} images per class",
        "",
        f"Iterative diversity sampling in the penultimate features of `{r['classifier']}` over a pool of "
        f"{m['pool']['generated']} compositions of `{r['generator']}` and {m['pool']['augmented']} classical augmentations "
        f"per class; K = {r['k']} pairs per iteration. Stopped: {m['stop']}.",
        "",
        "| iteration | mean NN distance | swaps | rejected |",
        "| ---: | ---: | ---: | ---: |",
        f"| 0 | {m['history'][0]:.5g} | | |",
    ]
    swaps = [sum(e["removed_at"] == it for e in m["removed"]) for it in range(1, len(m["history"]))]
    for it, (h, s, rej) in enumerate(zip(m["history"][1:], swaps, m["rejected"]), 1):
        lines.append(f"| {it} | {h:.5g} | {s} | {rej} |")
    f1 = m["validation"]["f1"]
    lines += ["", "| class | real | generated | augmented | total | F1 (validation) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for c, name in enumerate(m["source"]["classes"]):
        n = {kind: sum(e["label"] == c and e["kind"] == kind for e in m["files"]) for kind in ("real", "generated", "augmented")}
        lines.append(f"| {name} | {n['real']} | {n['generated']} | {n['augmented']} | {m['per_class'][c]} | "
                     f"{'' if f1 is None else f'{f1[c]:.3f}'} |")
    if m["removed"]:
        lines += ["", f"{CHANGES}: a row per swap (the first {SHOWN_SWAPS}): removed image, the image it was nearest to, "
                  "its replacement."]
    return "\n".join(lines) + "\n"
