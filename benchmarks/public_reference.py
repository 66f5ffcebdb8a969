"""The PUBLIC reference code (creinders/ChimeraMix) on our data, our splits and our CPU budget.

    python benchmarks/public_reference.py --public /work/pubcode --data /work/shared/data/cifar10 \\
        --spc 10 --seeds 0-2 --methods baseline,mixup,chimeramix-seg --out /some/dir \\
        [--gen-steps 1000 --clf-steps 4000 --parallel 1 --python /work/pubenv/bin/python]

What it does
------------
For every seed s: train the public generator (its `train_generator.py`, ChimeraMix+Seg experiment config) and its
classifiers (`train_classifier.py` with the `baseline`, `mixup`, `chimeramix_segmentation` experiment configs),
each with the public code's own hydra configs, LightningModules and Lightning Trainer loop, in a subprocess of the
public code's own environment (--python). Then write <out>/results.json and <out>/results.md: per-seed test
accuracy on the data folder's full test split and the wall time of every run, mean +- std per method, the
measured time per optimizer step, and a projection of the full budget's wall time from those steps.

Nothing in the public checkout is edited. This file runs in two roles: as the harness (with our venv, which has
`chimeramix`) and, re-invoked as `public_reference.py _child SPEC.json` by the public environment's python, as a
thin driver that imports train_generator / train_classifier from the checkout, patches a few of their module
globals at runtime (listed below and in every result.json under "patches") and calls their hydra `main()`.

Our split, not theirs
---------------------
The harness draws the split with `chimeramix.data.make_split(train, source, spc, seed)` on the folder's training
images (decoded by `chimeramix.data.folder.load_split`) and writes <out>/splits/spc<N>_seed<s>.json: the chosen
files, their labels and the sha256 of their decoded pixels, plus the full test split's files and one sha256 over
all its pixels. In the child, `get_dm_class` (datasets/utils.py) is replaced in the training scripts' namespaces by a
subclass of the public CIFAR10DataModule whose get_train_dataset/get_test_dataset return exactly those images
(decoded again there with PIL); the rest of the public pipeline (TargetDataset, MultiTransformerDataset with its
transforms, MaximumLabelDataset, SegmentationDataset, IndexDataset, PairDataset, RepeatDataset, DataLoader) is the
public code's. At setup the child asserts that every image in the public pipeline's subset has the pixel hash of
our split's image (and that the subset is all of it, each image `repeats` times per epoch), that the test split is
the folder's complete test split (count and pixel hash), and after training that every image the training loader
fetched is one of ours.

The public code's own subset (datasets/pipeline/MaximumLabelDataset.py) uses the same rule as make_split (per
class in label order, shuffle that class's indices with one numpy default_rng(seed), keep the first spc) but on
torchvision's 50,000-image CIFAR-10, so it picks different images: the harness reports, per seed, the per-class
positions it would pick there and how many of them our 500-per-class folder holds at all.

Budget translation (the public code is epoch based)
---------------------------------------------------
steps = epochs x num_epoch_repetition x ceil(n_train x repeats / batch), repeats = num_dataset_repeats_base // spc.
The harness picks the repeats closest to the public default (500 // spc) for which a whole number of epochs gives
exactly the requested steps (else the nearest achievable count, recorded as "steps" next to "requested").
The classifier runs epochs=1 and num_epoch_repetition=E: the public Trainer validates every num_epoch_repetition
epochs (check_val_every_n_epoch), so the full test split is evaluated once, at the end, and its cosine schedule
(T_max = epochs x num_epoch_repetition x steps_per_epoch) spans the run. The generator runs epochs=E.

Runtime patches (child only; the checkout is not modified)
-----------------------------------------------------------
- `pl.Trainer(accelerator="gpu", precision=16)` (train_generator.py:487-498, train_classifier.py:402-413): run on
  accelerator="cpu", precision=32 (our CPU runs are fp32 too), progress bar off, plus a timing probe callback.
- DataLoader workers 8 (train_generator.py:527, train_classifier.py:448-449): 0, single process.
- `get_dm_class` (datasets/utils.py:4, imported by both scripts): our split's data module (above).
- generator LR milestones `np.array([60, 120, 160]) * steps_per_epoch` (train_generator.py:407), written for its
  200 epochs (configs/gen/base.yaml:13): scaled by epochs/200 so the x0.2 steps stay at 30/60/80 % of the run
  (--gen-milestones as-coded keeps them as coded: with a few epochs they are never reached).
- WRN-16-2: the public classifier knows wideresnet (28-10), wideresnet_16_8 and resnet50 only
  (train_classifier.py:75-88); with model=wideresnet_16_8 its WideResNet(depth=16, widen_factor=8) call is given
  widen_factor=--clf-widen (2).
- TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: torch >= 2.6 loads weights only by default, and Lightning 1.9's
  load_from_checkpoint of the generator (train_classifier.py:472) holds omegaconf objects in its hparams.
- WANDB_MODE=disabled (both scripts log through WandbLogger and wandb.Image).
- `--config-path=<checkout>/configs/{gen,cls} --config-name=base` on hydra's command line: imported rather than run
  as __main__, `@hydra.main(config_path="configs/gen")` (train_generator.py:430, train_classifier.py:350) would look
  for a python module configs.gen.
- datasets/pipeline/SegmentationDataset.py:11 takes `skimage.segmentation.__dict__[method]`, empty for a lazily
  loaded skimage (>= 0.20) until first attribute access: the child fills it with skimage's own felzenszwalb.

Smoke test (one seed, all three methods, minutes): add `--gen-steps 26 --clf-steps 40 --clf-repeats 1 --recount`
(--recount re-evaluates the test split outside Lightning's metric and asserts the same accuracy).
The projection in results.md: per run, fixed cost (start-up, data, the one test evaluation) + target steps x the
measured mean time per step; "CPU" uses process CPU time per step instead of wall time (less sensitive to other
load on the machine); two at a time assumes two free cores.

Environment of the public code (--python): Python 3.11 venv with torch 2.14.1, torchvision 0.29.1, lightning 1.9.5,
lightning-cloud 0.5.36 (0.6 breaks lightning 1.9's import), setuptools < 81 (lightning 1.9 needs pkg_resources),
numpy < 2 (lightning 1.9 uses np.Inf), wandb 0.18.7 (still has RunDisabled, which lightning 1.9 imports),
hydra-core 1.3, omegaconf 2.3, torchinfo, torchmetrics, scikit-image, hydra-slurm-rich-launcher (configs/*/slurm.yaml
name its launcher), kornia.

Runs are resumable at run granularity: a run whose result.json exists with the same key (overrides, patches,
split, and for ChimeraMix the generator checkpoint's hash) is skipped; --force reruns everything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HARNESS_VERSION = 1
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
for _k, _v in THREAD_ENV.items():
    os.environ.setdefault(_k, _v)

# method name -> (classifier experiment config, generator experiment config or None, public mix_mode)
METHODS = {
    "baseline": ("baseline", None, None),
    "mixup": ("mixup", None, None),
    "chimeramix-seg": ("chimeramix_segmentation", "chimeramix_segmentation", "segmentation"),
    "chimeramix-grid": ("chimeramix_grid", "chimeramix_grid", "grid"),
}
PUBLIC_EPOCHS = 200  # configs/gen/base.yaml:13 and configs/cls/base.yaml:16: what the hard-coded milestones assume
PUBLIC_REPEATS_BASE = 500  # num_dataset_repeats_base in both base.yaml


# ----------------------------------------------------------------------------------------------------------------
# helpers shared by both roles (stdlib only)
# ----------------------------------------------------------------------------------------------------------------

def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            seeds.extend(range(int(a), int(b) + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise SystemExit("--seeds: give e.g. 0-2 or 0,1,2")
    return seeds


def plan_epochs(steps: int, n_train: int, batch: int, repeats_default: int, repeats: int | None = None) -> dict:
    """Repeats and epochs so that epochs x ceil(n_train x repeats / batch) == steps (else as near as possible)."""
    candidates = [repeats] if repeats else range(1, max(1, -(-steps * batch // n_train)) + 1)
    best = None
    for r in candidates:
        spe = -(-n_train * r // batch)
        e = max(1, round(steps / spe))
        key = (abs(e * spe - steps), abs(r - repeats_default), -r)
        if best is None or key < best[0]:
            best = (key, r, e, spe)
    _, r, e, spe = best
    return {"requested": steps, "steps": e * spe, "repeats": r, "epochs": e, "steps_per_epoch": spe,
            "n_train": n_train, "batch": batch}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# harness role (our venv)
# ----------------------------------------------------------------------------------------------------------------

def make_manifest(data: Path, spc: int, seed: int, out: Path) -> dict:
    """Our split for (spc, seed) as chimeramix draws it, with pixel hashes, and the full test split."""
    import numpy as np
    import torch
    from PIL import Image

    from chimeramix.data import make_split, open_source
    from chimeramix.data.folder import list_classes, load_split

    torch.set_num_threads(1)
    path = out / "splits" / f"spc{spc}_seed{seed}.json"
    src = open_source(str(data))
    root = Path(src.name)
    cache = _DECODED.setdefault(str(root), {})
    if "train" not in cache:
        cache["train"] = load_split(root, "train", None, workers=1)
        cache["test"] = load_split(root, "test", None, workers=1)
    train, test = cache["train"], cache["test"]
    split = make_split(train, src.name, spc, seed)

    def files(part):  # load_split's order: classes as listed, files sorted within each class
        return [p for imgs in list_classes(root / part).values() for p in imgs]

    train_files, test_files = files("train"), files("test")
    assert len(train_files) == len(train) and len(test_files) == len(test)

    def px_hash(img_chw) -> str:
        return hashlib.sha256(np.ascontiguousarray(img_chw.permute(1, 2, 0).numpy()).tobytes()).hexdigest()

    entries = []
    for i in split.indices:
        p = train_files[i]
        h = px_hash(train.images[i])
        with Image.open(p) as im:  # a second decoder's word on the same file
            assert hashlib.sha256(np.asarray(im.convert("RGB"), dtype=np.uint8).tobytes()).hexdigest() == h, p
        entries.append({"index": int(i), "path": str(p), "label": int(train.labels[i]), "sha256": h})
    test_hash = hashlib.sha256(np.ascontiguousarray(test.images.permute(0, 2, 3, 1).numpy()).tobytes()).hexdigest()
    manifest = {
        "source": src.name, "fingerprint": split.fingerprint, "classes": list(split.classes), "spc": spc, "seed": seed,
        "indices": [int(i) for i in split.indices], "train": entries,
        "folder_train_labels": [int(x) for x in train.labels.tolist()],
        "test": {"n": len(test), "paths": [str(p) for p in test_files], "labels": [int(x) for x in test.labels.tolist()],
                 "sha256_pixels": test_hash},
        "public_own_subset": public_own_subset(split, train, spc, seed),
    }
    write_json(path, manifest)
    return manifest


_DECODED: dict = {}


def public_own_subset(split, train, spc: int, seed: int) -> dict:
    """What datasets/pipeline/MaximumLabelDataset.py would pick for this seed on torchvision's CIFAR-10 train set.

    It shuffles np.where(labels == c)[0] for c = 0..9 with one default_rng(seed) and keeps the first n. A shuffle's
    permutation depends only on the array's length, so the per-class positions it picks among torchvision's 5,000
    training images of each class follow from the seed alone, without the data."""
    import numpy as np

    per_class_public = 5000  # CIFAR-10 train: 5,000 per class
    rng = np.random.default_rng(seed)
    public_pos = []
    for _ in range(len(split.classes)):
        idx = np.arange(per_class_public)
        rng.shuffle(idx)
        public_pos.append(sorted(int(i) for i in idx[:spc]))
    labels = train.labels.numpy()
    starts = {c: int(np.flatnonzero(labels == c)[0]) for c in range(len(split.classes))}
    ours_pos = [[] for _ in split.classes]
    for i in split.indices:
        c = int(labels[i])
        ours_pos[c].append(int(i) - starts[c])
    ours_pos = [sorted(p) for p in ours_pos]
    folder_per_class = int(np.bincount(labels).min())
    in_folder = sum(1 for pos in public_pos for p in pos if p < folder_per_class)
    same = sum(len(set(a) & set(b)) for a, b in zip(public_pos, ours_pos))
    return {
        "rule": "MaximumLabelDataset: per class in label order, default_rng(seed).shuffle(class indices)[:n], then "
                "one more shuffle of the chosen list (order only); RepeatDataset seed+1000; PairDataset python random",
        "public_positions_in_torchvision_class": public_pos,
        "our_positions_in_folder_class": ours_pos,
        "public_picks_within_folder_range": in_folder,
        "same_positions": same,
        "of": spc * len(split.classes),
        "caveat": "positions are ranks within a class; that the folder's per-class file numbers follow torchvision's "
                  "order is an assumption (shared/data/README.md only says 'order by file name = order in the source')",
    }


def public_head(public: Path) -> dict:
    def git(*a):
        r = subprocess.run(["git", "-C", str(public), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return {"path": str(public), "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def gen_overrides(a, seed: int, gen_exp: str, plan: dict) -> list[str]:
    return [
        "+dataset=cifar10", f"+experiment={gen_exp}",
        f"max_labels_per_class={a.spc}", f"seed={seed}",
        f"generator_image_size={a.gen_size}", f"generator_features={a.ngf}", f"discriminator_features={a.ndf}",
        f"batch_size={a.gen_batch}", f"lr={a.gen_lr}",
        f"epochs={plan['epochs']}", "num_epoch_repetition=1", f"num_dataset_repeats_base={plan['repeats'] * a.spc}",
        "override=true",  # the harness decides what to skip; its own check torch.loads the checkpoint
    ]


def clf_overrides(a, seed: int, clf_exp: str, plan: dict) -> list[str]:
    return [
        "+dataset=cifar10", f"+experiment={clf_exp}",
        f"max_labels_per_class={a.spc}", f"seed={seed}",
        "model=wideresnet_16_8", f"lr={a.clf_lr}", f"wd={a.clf_wd}", f"batch_size={a.clf_batch}",
        "epochs=1", f"num_epoch_repetition={plan['epochs']}", f"num_dataset_repeats_base={plan['repeats'] * a.spc}",
        f"mix_generator_image_size={a.gen_size}", f"mix_generator_features={a.ngf}",
        f"mix_discriminator_features={a.ndf}",
    ]


def generator_ckpt(work: Path, a, seed: int, mix_mode: str) -> Path:
    """utils/checkpoints.py checkpoint_chimera's path for these overrides (both scripts compute the same one)."""
    noise = "segmentation" if mix_mode == "segmentation" else "mask_4x4"
    name = f"chimera_gen_cifar10_{a.spc}_{seed}_G-{a.ngf}-4-2_D-{a.ndf}_{a.gen_size}_{noise}"
    return work / "tmp" / "models" / "generator" / name / "last.ckpt"


class Job:
    def __init__(self, name, kind, seed, method, spec, deps, run_dir):
        self.name, self.kind, self.seed, self.method, self.spec, self.deps = name, kind, seed, method, spec, deps
        self.run_dir = run_dir
        self.proc = None
        self.t0 = None
        self.result = None


def harness(argv) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--public", type=Path, required=True, help="a checkout of creinders/ChimeraMix (not modified)")
    p.add_argument("--data", type=Path, required=True, help="image folder with train/<class>/ and test/<class>/")
    p.add_argument("--spc", type=int, default=10)
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--methods", default="baseline,mixup,chimeramix-seg", help=f"from {', '.join(METHODS)}")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--python", default="/work/pubenv/bin/python", help="python of the public code's environment")
    p.add_argument("--gen-steps", type=int, default=1000)
    p.add_argument("--clf-steps", type=int, default=4000)
    p.add_argument("--gen-batch", type=int, default=16)
    p.add_argument("--clf-batch", type=int, default=10)
    p.add_argument("--gen-repeats", type=int, default=None, help="force the generator's repeats per epoch")
    p.add_argument("--clf-repeats", type=int, default=None, help="force the classifier's repeats per epoch")
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--ndf", type=int, default=16)
    p.add_argument("--gen-size", type=int, default=32, help="generator_image_size (public CIFAR config: 64)")
    p.add_argument("--gen-lr", type=float, default=2e-4, help="public default 2e-4")
    p.add_argument("--gen-milestones", choices=("scaled", "as-coded"), default="scaled")
    p.add_argument("--clf-lr", type=float, default=0.05)
    p.add_argument("--clf-wd", type=float, default=5e-4)
    p.add_argument("--clf-widen", type=int, default=2, help="WRN-16-k width (public CIFAR config: 8)")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (each single-threaded)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--recount", action="store_true", help="also recount test accuracy outside Lightning's metric")
    p.add_argument("--project-gen-steps", type=int, default=1000)
    p.add_argument("--project-clf-steps", type=int, default=4000)
    p.add_argument("--project-seeds", type=int, default=3)
    p.add_argument("--force", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="write splits and print the runs' overrides only")
    a = p.parse_args(argv)

    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}: choose from {', '.join(METHODS)}")
    seeds = parse_seeds(a.seeds)
    public = a.public.resolve()
    for f in ("train_generator.py", "train_classifier.py", "datasets/cifar10.py"):
        if not (public / f).is_file():
            raise SystemExit(f"{public} is not a ChimeraMix checkout (no {f})")
    head = public_head(public)
    if head["dirty"]:
        print(f"warning: {public} has local changes; the harness expects a clean checkout", file=sys.stderr)
    out = a.out.resolve()
    work = out / "work"  # the public scripts' cwd: tmp/models/... and wandb land here
    work.mkdir(parents=True, exist_ok=True)

    n_classes = len([d for d in (a.data / "train").iterdir() if d.is_dir() and not d.name.startswith(".")])
    n_train = a.spc * n_classes
    r_default = max(PUBLIC_REPEATS_BASE // a.spc, 1)
    gen_plan = plan_epochs(a.gen_steps, n_train, a.gen_batch, r_default, a.gen_repeats)
    clf_plan = plan_epochs(a.clf_steps, n_train, a.clf_batch, r_default, a.clf_repeats)
    for what, pl in (("generator", gen_plan), ("classifier", clf_plan)):
        if pl["steps"] != pl["requested"]:
            print(f"note: the {what} runs {pl['steps']} steps ({pl['epochs']} epochs x {pl['steps_per_epoch']}), "
                  f"the nearest the public epoch loop gives to {pl['requested']}", file=sys.stderr)

    jobs: dict[str, Job] = {}
    manifests = {}
    for s in seeds:
        t = time.time()
        manifests[s] = make_manifest(a.data.resolve(), a.spc, s, out)
        print(f"split seed {s}: {len(manifests[s]['train'])} images ({time.time() - t:.1f}s)", flush=True)
        man_path = out / "splits" / f"spc{a.spc}_seed{s}.json"
        for m in methods:
            clf_exp, gen_exp, mix_mode = METHODS[m]
            deps = []
            if gen_exp:
                gname = f"seed{s}/generator-{mix_mode}"
                if gname not in jobs:
                    ov = gen_overrides(a, s, gen_exp, gen_plan)
                    scale = (gen_plan["epochs"] / PUBLIC_EPOCHS) if a.gen_milestones == "scaled" else 1.0
                    spec = {"kind": "generator", "overrides": ov, "plan": gen_plan, "milestone_scale": scale,
                            "ckpt": str(generator_ckpt(work, a, s, mix_mode))}
                    jobs[gname] = Job(gname, "generator", s, f"generator-{mix_mode}", spec, [], out / "runs" / gname)
                deps = [gname]
            name = f"seed{s}/{m}"
            spec = {"kind": "classifier", "overrides": clf_overrides(a, s, clf_exp, clf_plan), "plan": clf_plan,
                    "widen": a.clf_widen, "recount": a.recount,
                    "ckpt": str(generator_ckpt(work, a, s, mix_mode)) if gen_exp else None}
            jobs[name] = Job(name, "classifier", s, m, spec, deps, out / "runs" / name)
        for j in jobs.values():
            if j.seed == s:
                j.spec.update({"public": str(public), "manifest": str(man_path), "threads": a.threads,
                               "harness_version": HARNESS_VERSION, "public_commit": head["commit"]})

    if a.dry_run:
        for j in jobs.values():
            print(j.name, " ".join(j.spec["overrides"]))
        return 0

    run_jobs(jobs, a, work)
    report(jobs, a, out, head, gen_plan, clf_plan, manifests, methods, seeds)
    failed = [j.name for j in jobs.values() if not (j.result and j.result.get("status") == "ok")]
    if failed:
        print(f"failed: {', '.join(failed)} (see their log.txt)", file=sys.stderr)
        return 1
    return 0


def job_key(j: Job, jobs) -> dict:
    key = {k: j.spec[k] for k in sorted(j.spec) if k not in ("threads", "recount")}
    key["manifest_sha256"] = sha256_file(Path(j.spec["manifest"]))
    if j.kind == "classifier" and j.spec.get("ckpt"):
        key["generator_ckpt_sha256"] = sha256_file(Path(j.spec["ckpt"])) if Path(j.spec["ckpt"]).is_file() else None
    return key


def run_jobs(jobs: dict, a, work: Path) -> None:
    pending = list(jobs.values())
    pending.sort(key=lambda j: (j.kind != "generator", j.seed))  # generators first: they unblock ChimeraMix
    running: list[Job] = []
    env = {**os.environ, **THREAD_ENV, "WANDB_MODE": "disabled", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    while pending or running:
        for j in list(running):
            rc = j.proc.poll()
            if rc is None:
                continue
            running.remove(j)
            wall = time.time() - j.t0
            res_path = j.run_dir / "result.json"
            res = json.loads(res_path.read_text()) if res_path.is_file() else {}
            if rc == 0 and res.get("status") == "ok":
                res["process_wall_s"] = wall
                res["key"] = j.key
                write_json(res_path, res)
                j.result = res
                acc = f" acc {100 * res['test_accuracy']:.2f}%" if "test_accuracy" in res else ""
                print(f"done {j.name}: {wall:.0f}s{acc}", flush=True)
            else:
                j.result = {"status": "failed", "rc": rc, "process_wall_s": wall}
                write_json(res_path, {**res, **j.result})
                print(f"FAILED {j.name} (rc {rc}); log: {j.run_dir / 'log.txt'}", flush=True)
        for j in list(pending):
            if len(running) >= max(1, a.parallel):
                break
            if any(jobs[d].result is None for d in j.deps):
                continue  # its generator is still to run
            pending.remove(j)
            if any(jobs[d].result.get("status") != "ok" for d in j.deps):
                j.result = {"status": "skipped", "why": "its generator failed"}
                print(f"skip {j.name}: its generator failed", flush=True)
                continue
            j.key = job_key(j, jobs)
            res_path = j.run_dir / "result.json"
            if not a.force and res_path.is_file():
                old = json.loads(res_path.read_text())
                if old.get("status") == "ok" and old.get("key") == j.key and \
                        (j.kind != "generator" or Path(j.spec["ckpt"]).is_file()):
                    j.result = old
                    print(f"finished before, skipped: {j.name}", flush=True)
                    continue
            j.run_dir.mkdir(parents=True, exist_ok=True)
            if res_path.exists():
                res_path.unlink()
            spec = {**j.spec, "run_dir": str(j.run_dir), "result": str(res_path)}
            spec_path = j.run_dir / "spec.json"
            write_json(spec_path, spec)
            log = open(j.run_dir / "log.txt", "w")
            cmd = [a.python, str(Path(__file__).resolve()), "_child", str(spec_path)]
            print(f"start {j.name}: {' '.join(j.spec['overrides'])}", flush=True)
            j.t0 = time.time()
            j.proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            running.append(j)
        if running:
            time.sleep(1.0)


def _mean_std(xs):
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def project(jobs: dict, a) -> dict:
    """Projected wall time of the full budget from the measured runs: fixed cost (start-up, data, test evaluation)
    + target steps x measured mean step time; on one core (runs one after another) and with two runs at a time."""
    per = {}
    for j in jobs.values():
        r = j.result or {}
        if r.get("status") != "ok":
            continue
        st = r["steps"]
        loop = r["train_loop_wall_s"] - r.get("validation_wall_s", 0.0)
        fixed = r["process_wall_s"] - loop - r.get("recount_wall_s", 0.0)  # the full run does not recount
        per.setdefault(j.method, []).append({"fixed_s": fixed, "step_wall_s": st["mean_wall_s"],
                                             "step_cpu_s": st["mean_cpu_s"], "kind": j.kind})
    rows = {}
    for m, xs in per.items():
        target = a.project_gen_steps if xs[0]["kind"] == "generator" else a.project_clf_steps
        fixed = statistics.mean(x["fixed_s"] for x in xs)
        sw = statistics.mean(x["step_wall_s"] for x in xs)
        sc = statistics.mean(x["step_cpu_s"] for x in xs)
        rows[m] = {"kind": xs[0]["kind"], "target_steps": target, "fixed_s": fixed, "step_wall_s": sw, "step_cpu_s": sc,
                   "run_wall_s": fixed + target * sw, "run_cpu_estimate_s": fixed + target * sc}
    seeds = a.project_seeds

    def makespan(field, slots):
        # seeds x (generator first, then classifiers); list scheduling, longest first among the ready runs
        gens = [(rows[m][field], m) for m in rows if rows[m]["kind"] == "generator"]
        clfs = [(rows[m][field], m) for m in rows if rows[m]["kind"] == "classifier"]
        free = [0.0] * slots
        gen_done = {}
        for s in range(seeds):
            for d, m in gens:
                i = free.index(min(free))
                free[i] += d
                gen_done[(s, m)] = free[i]
        tasks = []
        for s in range(seeds):
            for d, m in clfs:
                ready = 0.0
                if m.startswith("chimeramix"):
                    ready = gen_done.get((s, "generator-" + ("segmentation" if m.endswith("seg") else "grid")), 0.0)
                tasks.append((ready, -d, d))
        for ready, _, d in sorted(tasks):
            i = free.index(min(free))
            free[i] = max(free[i], ready) + d
        return max(free) if free else 0.0

    return {"per_run": rows, "seeds": seeds,
            "sequential_wall_s": makespan("run_wall_s", 1), "two_parallel_wall_s": makespan("run_wall_s", 2),
            "sequential_cpu_estimate_s": makespan("run_cpu_estimate_s", 1),
            "two_parallel_cpu_estimate_s": makespan("run_cpu_estimate_s", 2)}


def report(jobs, a, out: Path, head, gen_plan, clf_plan, manifests, methods, seeds) -> None:
    runs = {j.name: {"kind": j.kind, "seed": j.seed, "method": j.method, **(j.result or {})} for j in jobs.values()}
    proj = project(jobs, a)
    settings = settings_table(a, gen_plan, clf_plan)
    summary = {}
    for m in methods:
        accs = [runs[f"seed{s}/{m}"].get("test_accuracy") for s in seeds]
        accs = [x for x in accs if x is not None]
        mu, sd = _mean_std(accs)
        summary[m] = {"n": len(accs), "mean": mu, "std": sd}
    res = {"harness_version": HARNESS_VERSION, "public": head, "data": str(a.data.resolve()), "spc": a.spc,
           "seeds": seeds, "methods": methods, "generator_plan": gen_plan, "classifier_plan": clf_plan,
           "settings": settings, "runs": runs, "summary": summary, "projection": proj,
           "public_own_subset": {s: manifests[s]["public_own_subset"] for s in seeds},
           "command": " ".join([sys.executable, *sys.argv])}
    write_json(out / "results.json", res)

    L = [f"# Public reference code (creinders/ChimeraMix @ {(head['commit'] or '?')[:7]}) on our splits",
         "", f"Data: {a.data.resolve()} (test: its full test split), spc {a.spc}, seeds {a.seeds}. "
         f"Generator {gen_plan['steps']} steps ({gen_plan['epochs']} epochs x {gen_plan['steps_per_epoch']}, "
         f"repeats {gen_plan['repeats']}), classifier {clf_plan['steps']} steps ({clf_plan['epochs']} epochs x "
         f"{clf_plan['steps_per_epoch']}, repeats {clf_plan['repeats']}).", "",
         "## Test accuracy (%) and wall time per run (s)", ""]
    gens = sorted({j.method for j in jobs.values() if j.kind == "generator"})
    L.append("| seed | " + " | ".join(f"{m} acc" for m in methods) + " | " +
             " | ".join(f"{m} s" for m in gens + methods) + " |")
    L.append("|" + "---|" * (1 + len(methods) + len(gens) + len(methods)))

    def acc(r):
        return f"{100 * r['test_accuracy']:.2f}" if r.get("test_accuracy") is not None else r.get("status", "-")

    def wall(r):
        return f"{r['process_wall_s']:.0f}" if r.get("process_wall_s") is not None else "-"

    for s in seeds:
        cells = [acc(runs[f"seed{s}/{m}"]) for m in methods]
        cells += [wall(runs[f"seed{s}/{g}"]) for g in gens] + [wall(runs[f"seed{s}/{m}"]) for m in methods]
        L.append(f"| {s} | " + " | ".join(cells) + " |")
    cells = []
    for m in methods:
        sm = summary[m]
        cells.append(f"{100 * sm['mean']:.2f} ± {100 * sm['std']:.2f}" if sm["mean"] is not None else "-")
    L.append("| mean ± std | " + " | ".join(cells) + " |" + " |" * (len(gens) + len(methods)))
    L += ["", "## Time per optimizer step (measured; first step excluded)", "",
          "| run | steps | wall s/step (mean) | wall s/step (median) | CPU s/step (mean) | train loop s | test eval s |",
          "|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if r.get("status") != "ok":
            continue
        st = r["steps"]
        L.append(f"| {name} | {st['count']} | {st['mean_wall_s']:.4f} | {st['median_wall_s']:.4f} | "
                 f"{st['mean_cpu_s']:.4f} | {r['train_loop_wall_s']:.1f} | {r.get('validation_wall_s', 0.0):.1f} |")
    L += ["", f"## Projection: generator {a.project_gen_steps} steps, classifier {a.project_clf_steps} steps, "
          f"{proj['seeds']} seeds", "",
          "| run | fixed s | s/step (wall) | projected run s (wall) | projected run s (CPU time per step) |",
          "|---|---|---|---|---|"]
    for m, r in proj["per_run"].items():
        L.append(f"| {m} | {r['fixed_s']:.0f} | {r['step_wall_s']:.4f} | {r['run_wall_s']:.0f} | "
                 f"{r['run_cpu_estimate_s']:.0f} |")
    L += ["", f"- one run at a time: {proj['sequential_wall_s'] / 3600:.2f} h as measured "
          f"({proj['sequential_cpu_estimate_s'] / 3600:.2f} h from CPU time per step)",
          f"- two runs at a time: {proj['two_parallel_wall_s'] / 3600:.2f} h as measured "
          f"({proj['two_parallel_cpu_estimate_s'] / 3600:.2f} h from CPU time per step)", "",
          "## Settings: ours -> the public code", "", "| our setting | public config key / override |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in settings]
    L += ["", "## The public code's own subset vs ours", "",
          "| seed | public picks inside the folder's 500/class | same per-class positions as ours |", "|---|---|---|"]
    for s in seeds:
        o = manifests[s]["public_own_subset"]
        L.append(f"| {s} | {o['public_picks_within_folder_range']} / {o['of']} | {o['same_positions']} / {o['of']} |")
    ok_runs = [r for r in runs.values() if r.get("status") == "ok"]
    data_ok = bool(ok_runs) and all((r.get("data_check") or {}).get("ok") for r in ok_runs)
    L += ["", f"Data check (every run trained on exactly our split's pixels, evaluated on the full test split): "
          f"{'passed' if data_ok else 'FAILED or missing'}.", ""]
    (out / "results.md").write_text("\n".join(L))
    print("\n".join(L))


def settings_table(a, gen_plan, clf_plan) -> list[tuple[str, str]]:
    g, c = gen_plan, clf_plan
    return [
        ("split: make_split(train, source, spc, seed)", "get_dm_class -> our data module (runtime); "
         f"max_labels_per_class={a.spc}, seed=s"),
        ("test: the folder's full test split", "get_test_dataset of that data module"),
        (f"generator ngf {a.ngf}, ndf {a.ndf}", f"generator_features={a.ngf} discriminator_features={a.ndf}"),
        ("generator n_res 2 (decoder's discarded)", "generator_blocks=4 generator_split=2 (defaults)"),
        (f"generator {g['requested']} steps, batch {a.gen_batch}",
         f"batch_size={a.gen_batch} epochs={g['epochs']} num_epoch_repetition=1 "
         f"num_dataset_repeats_base={g['repeats'] * a.spc} (repeats {g['repeats']}, {g['steps_per_epoch']} steps/epoch)"),
        (f"generator native {a.gen_size} px", f"generator_image_size={a.gen_size} (cifar10 config: 64)"),
        (f"generator lr {a.gen_lr:g}, x0.2 at 30/60/80 %", f"lr={a.gen_lr:g}; milestones [60,120,160] x steps/epoch "
         f"x {g['epochs']}/200 ({a.gen_milestones}, runtime)"),
        ("classifier WRN-16-2, dropout 0.3", f"model=wideresnet_16_8 + widen_factor {a.clf_widen} (runtime)"),
        (f"classifier lr {a.clf_lr:g}, wd {a.clf_wd:g}, batch {a.clf_batch}, cosine",
         f"lr={a.clf_lr:g} wd={a.clf_wd:g} batch_size={a.clf_batch} (lr_scheduler CosineAnnealingLR default)"),
        (f"classifier {c['requested']} steps, one test evaluation at the end",
         f"epochs=1 num_epoch_repetition={c['epochs']} num_dataset_repeats_base={c['repeats'] * a.spc} "
         f"(repeats {c['repeats']}, {c['steps_per_epoch']} steps/epoch; check_val_every_n_epoch = num_epoch_repetition)"),
        ("ChimeraMix generator for the classifier", f"mix_generator_features={a.ngf} mix_discriminator_features={a.ndf} "
         f"mix_generator_image_size={a.gen_size} (checkpoint path)"),
        ("CPU, fp32, 1 thread", "Trainer accelerator=cpu precision=32 (runtime), workers 0, torch threads 1"),
    ]


# ----------------------------------------------------------------------------------------------------------------
# child role (the public code's environment): drive train_generator.main / train_classifier.main
# ----------------------------------------------------------------------------------------------------------------

def child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import types
    from functools import partial

    import numpy as np
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    torch.set_num_interop_threads(1)
    public = spec["public"]
    sys.path.insert(0, public)
    man = json.loads(Path(spec["manifest"]).read_text())
    from PIL import Image
    from torch.utils.data import Dataset

    import lightning.pytorch as real_pl
    from lightning.pytorch.callbacks import Callback

    kind = spec["kind"]
    mod = __import__("train_generator" if kind == "generator" else "train_classifier")
    from datasets.cifar10 import CIFAR10DataModule
    from datasets.pipeline.MaximumLabelDataset import MaximumLabelDataset
    from datasets.pipeline.RepeatDataset import RepeatDataset

    state = {"patches": [], "fetched": set()}
    import skimage.segmentation as skseg

    # datasets/pipeline/SegmentationDataset.py:11 looks the method up in skimage.segmentation.__dict__, which the
    # lazily loading skimage (>= 0.20) fills only on first attribute access.
    skseg.__dict__.setdefault("felzenszwalb", skseg.felzenszwalb)
    state["patches"].append("skimage.segmentation.__dict__['felzenszwalb'] filled (lazy module)")

    def px(img) -> str:
        return hashlib.sha256(np.asarray(img, dtype=np.uint8).tobytes()).hexdigest()

    class SplitImages(Dataset):
        """(PIL image, label) as torchvision's CIFAR10 returns them, for exactly the manifest's files."""

        def __init__(self, paths, labels, record=None):
            self.paths, self.targets, self.record = list(paths), list(labels), record
            self.classes = man["classes"]
            self._arrays = None

        def arrays(self):
            if self._arrays is None:
                out = []
                for p in self.paths:
                    with Image.open(p) as im:
                        out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
                self._arrays = out
            return self._arrays

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            if self.record is not None:
                self.record.add(int(i))
            return Image.fromarray(self.arrays()[i]), self.targets[i]

    train_ds = SplitImages([e["path"] for e in man["train"]], [e["label"] for e in man["train"]], state["fetched"])
    test_ds = SplitImages(man["test"]["paths"], man["test"]["labels"])

    def check_pipeline(dm):
        """The public pipeline's training subset is our split, pixel for pixel; its test set our full test split."""
        chk = {}
        ours = [e["sha256"] for e in man["train"]]
        arrs = train_ds.arrays()
        assert [px(x) for x in arrs] == ours, "decoded training images differ from the split manifest's pixels"
        ds, mld, rep = dm.train_ds, None, None
        while ds is not None:
            if isinstance(ds, RepeatDataset) and rep is None:
                rep = ds
            if isinstance(ds, MaximumLabelDataset):
                mld = ds
            ds = ds.__dict__.get("ds") or ds.__dict__.get("dataset")
        assert mld is not None, "the public pipeline lost its MaximumLabelDataset"
        picked = sorted(int(i) for i in mld.indices)
        assert picked == list(range(len(ours))), f"the public subset is not all of our split: {picked}"
        assert sorted(px(arrs[i]) for i in mld.indices) == sorted(ours)
        chk["train_images"] = len(picked)
        chk["train_pixels_match_split"] = True
        if rep is not None:
            counts = np.bincount(np.asarray(rep.indices), minlength=len(picked))
            assert counts.min() == counts.max() == spec["plan"]["repeats"], "RepeatDataset does not repeat evenly"
        chk["repeats_per_epoch"] = spec["plan"]["repeats"]
        n_loader = len(dm.train_dataloader())
        assert n_loader == spec["plan"]["steps_per_epoch"], (n_loader, spec["plan"])
        t = test_ds.arrays()
        assert len(t) == man["test"]["n"]
        assert hashlib.sha256(np.stack(t).tobytes()).hexdigest() == man["test"]["sha256_pixels"], "test pixels differ"
        chk["test_images"] = len(t)
        chk["test_pixels_match_folder"] = True
        # The public picker itself on the folder's own 5,000-image pool: the same images as make_split?
        own = MaximumLabelDataset(_Stub(man["folder_train_labels"]), man["spc"], seed=man["seed"])
        chk["public_picker_on_folder_pool_same_images_as_make_split"] = sorted(own.indices) == sorted(man["indices"])
        state["data_check"] = chk

    class SplitDataModule(CIFAR10DataModule):
        def __init__(self, *args, **kw):
            kw["train_workers"], kw["val_workers"] = 0, 0
            super().__init__(*args, **kw)

        def prepare_data(self):  # no download
            pass

        def get_train_dataset(self, transform):
            assert transform is None
            self.classes = man["classes"]
            return train_ds

        def get_test_dataset(self, transform):
            assert transform is None
            return test_ds

        def setup(self, stage):
            super().setup(stage)
            check_pipeline(self)
            state["dm"] = self

    def get_dm_class(cfg):
        assert cfg.dataset == "cifar10", cfg.dataset
        return partial(SplitDataModule, use_cifair=False)

    mod.get_dm_class = get_dm_class
    import datasets.utils as du
    du.get_dm_class = get_dm_class
    state["patches"].append("get_dm_class -> SplitDataModule (our split, full test split, workers 0)")

    class Probe(Callback):
        def __init__(self):
            self.batch_end, self.val_n, self.val_runs, self.val_wall = [], 0, 0, 0.0

        def on_train_start(self, trainer, pl_module):
            self.t0 = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batch_end.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, trainer, pl_module):
            self.t1 = (time.perf_counter(), time.process_time())

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.v0 = time.perf_counter()

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            if not trainer.sanity_checking:
                self.val_n += len(batch["target"])

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.val_runs += 1
                self.val_wall += time.perf_counter() - self.v0

    probe = Probe()

    class TrainerProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(real_pl, name)

    def Trainer(**kw):
        state["trainer_asked"] = {k: v for k, v in kw.items() if isinstance(v, (int, float, str, bool, type(None)))}
        kw.update(accelerator="cpu", devices=1, precision=32, enable_progress_bar=False)
        kw["callbacks"] = list(kw.get("callbacks") or []) + [probe]
        t = real_pl.Trainer(**kw)
        state["trainer"] = t
        return t

    proxy = TrainerProxy("lightning.pytorch")
    proxy.Trainer = Trainer
    mod.pl = proxy
    state["patches"].append("pl.Trainer: accelerator gpu -> cpu, precision 16 -> 32, progress bar off, + probe")

    if kind == "generator":
        scale = float(spec["milestone_scale"])
        real_sched = mod.lr_scheduler

        class SchedProxy(types.ModuleType):
            def __getattr__(self, name):
                return getattr(real_sched, name)

        def MultiStepLR(optimizer, milestones, gamma=0.1, **kw):
            new = [int(round(float(m) * scale)) for m in np.asarray(milestones).ravel()]
            state.setdefault("milestones", []).append({"as_coded": [int(m) for m in np.asarray(milestones).ravel()],
                                                       "used": new})
            return real_sched.MultiStepLR(optimizer, new, gamma=gamma, **kw)

        sp = SchedProxy("torch.optim.lr_scheduler")
        sp.MultiStepLR = MultiStepLR
        mod.lr_scheduler = sp
        state["patches"].append(f"generator MultiStepLR milestones x {scale:g}")
    else:
        widen = int(spec["widen"])
        real_wrn = mod.WideResNet

        def WideResNet(depth, num_classes, widen_factor=1, dropRate=0.0):
            if depth == 16 and widen_factor == 8:
                widen_factor = widen
            state["wrn"] = {"depth": depth, "widen_factor": widen_factor, "dropRate": dropRate}
            return real_wrn(depth=depth, num_classes=num_classes, widen_factor=widen_factor, dropRate=dropRate)

        mod.WideResNet = WideResNet
        state["patches"].append(f"WideResNet(16, widen 8) -> widen {widen}")

    run_dir = Path(spec["run_dir"])
    # Imported (not run as __main__), hydra.main would look for its configs as the python module configs.gen:
    # point it at the checkout's folder, the one the script names (config_path="configs/gen" or "configs/cls").
    cfg_dir = Path(public) / "configs" / ("gen" if kind == "generator" else "cls")
    sys.argv = [str(Path(public) / f"train_{kind}.py"), f"--config-path={cfg_dir}", "--config-name=base",
                *spec["overrides"], f"hydra.run.dir={run_dir / 'hydra'}"]
    t_start = time.perf_counter()
    mod.main()
    t_main = time.perf_counter() - t_start
    trainer = state.get("trainer")
    assert trainer is not None, "the public main() returned before building its Trainer (did it skip the run?)"
    b = probe.batch_end
    walls = [y[0] - x[0] for x, y in zip(b, b[1:])]
    cpus = [y[1] - x[1] for x, y in zip(b, b[1:])]
    n = len(b)
    assert n == spec["plan"]["steps"], f"trained {n} steps, planned {spec['plan']['steps']}"
    fetched = state["fetched"]
    assert fetched <= set(range(len(man["train"]))), "the training loader fetched an image that is not ours"
    state["data_check"]["fetched_during_training"] = len(fetched)
    state["data_check"]["ok"] = True
    res = {
        "status": "ok", "kind": kind, "overrides": spec["overrides"], "plan": spec["plan"],
        "patches": state["patches"], "trainer_asked": state.get("trainer_asked"),
        "data_check": state["data_check"], "main_wall_s": t_main,
        "train_loop_wall_s": probe.t1[0] - probe.t0[0], "train_loop_cpu_s": probe.t1[1] - probe.t0[1],
        "steps": {"count": n, "mean_wall_s": statistics.mean(walls) if walls else None,
                  "median_wall_s": statistics.median(walls) if walls else None,
                  "mean_cpu_s": statistics.mean(cpus) if cpus else None,
                  "first_step_wall_s": (b[0][0] - probe.t0[0]) if b else None},
        "versions": {"torch": torch.__version__, "lightning": real_pl.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "public_commit": spec.get("public_commit"), "torch_threads": torch.get_num_threads(),
    }
    if kind == "generator":
        res["milestones"] = state.get("milestones")
        ck = Path(spec["ckpt"])
        assert ck.is_file(), f"the generator left no checkpoint at {ck}"
        res["ckpt"] = str(ck)
        res["global_step"] = int(trainer.global_step)
    else:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        assert probe.val_runs == 1, f"validated {probe.val_runs} times, expected once at the end"
        assert probe.val_n == man["test"]["n"], f"validated {probe.val_n} images, the test split has {man['test']['n']}"
        res.update(test_accuracy=metrics["val_acc"], val_loss=metrics.get("val_loss"),
                   val_acc_macro=metrics.get("val_acc_macro"), validation_images=probe.val_n,
                   validation_runs=probe.val_runs, validation_wall_s=probe.val_wall, wrn=state.get("wrn"))
        lm = trainer.lightning_module
        res["mix_modes"] = dict(lm.params.mix_modes)
        if spec.get("recount"):
            t_rc = time.perf_counter()
            lm.eval()
            correct = total = 0
            with torch.no_grad():
                for batch in state["dm"].val_dataloader():
                    pred = lm.model(batch["image"]).argmax(1)
                    correct += int((pred == batch["target"].long()).sum())
                    total += len(pred)
            res["recount_accuracy"] = correct / total
            res["recount_wall_s"] = time.perf_counter() - t_rc
            assert math.isclose(correct / total, res["test_accuracy"], abs_tol=1e-6), (correct / total, res["test_accuracy"])
    write_json(Path(spec["result"]), res)
    return 0


class _Stub:
    """A dataset with .targets only, for running the public subset picker on the folder's labels."""

    def __init__(self, targets):
        self.targets = list(targets)

    def __len__(self):
        return len(self.targets)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return child(argv[1])
    if str(Path(__file__).resolve().parents[1]) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # /work/main, for chimeramix
    return harness(argv)


if __name__ == "__main__":
    sys.exit(main())
