"""Stage 2: train a classifier, optionally with ChimeraMix compositions, and evaluate it once on the test set."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .. import masks
from ..augment import CropFlip, normalize
from ..config import (ClassifierConfig, GeneratorConfig, check_config, generator_from_record, method_name, paper_work_size, resolve_classifier,
                      to_dict)
from ..data.device import DeviceData
from ..data.imageset import ImageSet
from ..errors import ChimeraMixError
from ..fileio import write_json, write_text
from ..memory import check_classifier_fits
from ..methods import MethodSpec, StepContext
from ..models import network_of
from ..plots import save_confusion
from ..progress import SILENT, Progress
from ..report import classification_metrics, generator_recipe, run_markdown
from ..runs import finished_run, retrain_advice
from ..speed import SpeedOptions, bf16_warning
from .generator import load_generator
from .loop import TrainState
from .setup import classifier_identity, config_overrides, prepare_data, seeded_generator
from .stage import open_stage

WEIGHTS_FILE = "classifier.safetensors"


@dataclass
class ClassifierResult:
    run_dir: Path
    accuracy: float
    result: dict
    already_finished: bool = False


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine annealing from base to 0 over the run, per step."""
    return base * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))


def check_generator_split(gen_info: dict, split_key: dict, gen_dir) -> None:
    """Refuse a generator trained on other data: name every field that differs."""
    theirs = gen_info.get("split", {})
    diff = [f"{k} {theirs.get(k)!r} vs {v!r}" for k, v in split_key.items() if theirs.get(k) != v]
    if diff:
        raise ChimeraMixError(
            f"the generator in {gen_dir} was trained on another split ({'; '.join(diff)}, generator vs this run): "
            "train a generator with the same --data, --spc, --seed and --image-size"
        )


class ClassifierTrainer:
    def __init__(self, cfg: ClassifierConfig, data: DeviceData, rng: torch.Generator, method, G=None,
                 speed: SpeedOptions | None = None):
        self.cfg, self.data, self.rng, self.method, self.G = cfg, data, rng, method, G
        self.speed = sp = speed or SpeedOptions.resolve(data.device, cfg.amp, cfg.channels_last, cfg.fused, cfg.compile)
        net = network_of(cfg, len(data.classes))
        if cfg.pretrained:  # before the head trains: the body starts from ImageNet, the new head from scratch
            from ..models.backbones import load_imagenet, weights_file

            load_imagenet(net, cfg.arch, weights_file(cfg.arch, cfg.weights))
        self.model = sp.prepare_module(net.to(data.device))
        self._forward = sp.compiled(self.model)
        self.steps_per_epoch = max(1, -(-data.n * cfg.repeats // cfg.batch_size))
        self.extra_modules = method.modules(len(data.classes), data.device)
        extra = [p for m in self.extra_modules.values() for p in m.parameters()]
        if cfg.backbone_lr is not None and hasattr(self.model, "backbone_parameters"):
            # two groups, each cosine-annealed from its own rate: the backbone's smaller one, the head's (and the
            # method's own modules') lr
            groups = [{"params": list(self.model.backbone_parameters()), "lr": cfg.backbone_lr},
                      {"params": [*self.model.head_parameters(), *extra], "lr": cfg.lr}]
        else:
            groups = [{"params": [*self.model.parameters(), *extra], "lr": cfg.lr}]
        self.base_lrs = [g["lr"] for g in groups]
        self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                   weight_decay=cfg.weight_decay, **sp.optimizer_kwargs())

    def state(self) -> TrainState:
        return TrainState({"classifier": self.model, **{f"method.{k}": m for k, m in self.extra_modules.items()}},
                          {"sgd": self.opt}, self.rng)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, data = self.cfg, self.data
        for g, base in zip(self.opt.param_groups, self.base_lrs):
            g["lr"] = cosine_lr(base, step, cfg.steps)
        self.model.train()
        idx = data.batch_indices(step, cfg.batch_size)
        crop = CropFlip.sample(len(idx), data.images.shape[-1], self.rng, data.device)
        x = normalize(crop.apply(data.images[idx]))
        autocast = lambda: self.speed.autocast(data.device)  # noqa: E731
        ctx = StepContext(step, cfg.steps, len(data.classes), self.rng, idx, crop, data, self.G,
                          steps_per_epoch=self.steps_per_epoch, dataset=cfg.data, autocast=autocast)
        # Methods run in fp32 (mixing weights, soft labels, policies' pixel ops); only networks enter autocast.
        x, target = self.method.apply(x, data.labels[idx], ctx)
        with autocast():
            loss = self.method.loss(self._forward, self.speed.inputs(x.float()), target)
        loss = loss.float()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), **ctx.extra}  # extra: host-side floats, no device copy

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int, progress: Progress = SILENT) -> torch.Tensor:
        """Predicted labels for uint8 images (CPU or device), in eval mode, in chunks."""
        self.model.eval()
        preds = []
        progress.start("evaluate", len(images))
        for i in range(0, len(images), batch):
            x = self.speed.inputs(normalize(images[i: i + batch].to(self.data.device, non_blocking=True)))
            with self.speed.autocast(self.data.device):
                preds.append(self.model(x).argmax(1).cpu())
            progress.update("evaluate", min(i + batch, len(images)))
        progress.end("evaluate")
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def _method_options(cfg: ClassifierConfig, gen_cfg: GeneratorConfig | None, image_size: int) -> tuple[dict, dict]:
    """The method's options (the user's -o, then what the run implies: replacement rate, the generator's mask rules)
    and the run context it is built with (seed, the generator's working resolution)."""
    opts = dict(cfg.method_options)
    opts.setdefault("p_generated", cfg.p_generated)
    # without a generator, masks are drawn at the paper's working resolution (config.paper_work_size says why)
    work_size = gen_cfg.work_size if gen_cfg is not None else paper_work_size(image_size)
    context = {"seed": cfg.seed, "work_size": work_size}
    if gen_cfg is not None:
        # The generator's mask rules travel with it; asking for another kind is refused (it learned this one).
        spec = masks.MaskSpec.from_config(gen_cfg)
        asked = cfg.mask or opts.get("mask")
        if asked and asked != spec.mask:
            raise ChimeraMixError(
                f"the generator in {cfg.generator} was trained with --mask {spec.mask}, this run asks for {asked}: "
                f"drop --mask to use the generator's, or train a generator with --mask {asked}"
            )
        for k, v in spec.as_options().items():
            opts.setdefault(k, v)
        # The generator learned K-way compositions of its own K: another K is refused, as another mask kind is.
        k = gen_cfg.parents
        _check_parents(cfg.generator, k, opts.get("parents"))
        opts["parents"] = k
    else:
        if cfg.mask:
            opts.setdefault("mask", cfg.mask)
        # GridMix and SegMix without a generator draw masks as ChimeraMix would: 32x32 data at 64, Felzenszwalb 60/60
        # up to 64x64, 400/400 for larger images
        small = image_size <= 64
        opts.setdefault("work_size", work_size)
        opts.setdefault("seg_scale", 60 if small else 400)
        opts.setdefault("seg_min_size", 60 if small else 400)
    return opts, context


def fit_classifier(cfg: ClassifierConfig, *, resume: bool | str = False, force: bool = False, progress: Progress = SILENT,
                   root: str | Path = "checkpoints") -> ClassifierResult:
    """Train, then evaluate once on the whole test set; writes result.json, report.md, confusion.png."""
    check_config(cfg)
    if cfg.mask is not None:
        masks.check_choice("--mask", cfg.mask, masks.MASK_KINDS)
    # the method's name and options are refused before any data is read
    spec = MethodSpec.parse(method_name(cfg))
    spec.check_options(cfg.method_options)
    overrides = config_overrides(cfg)  # of the config as asked for, before resolving fills it in
    G = gen_info = gen = None
    if cfg.generator:
        gen_info = _read_generator_info(cfg.generator)
        gen = generator_from_record(gen_info["config"])
        _check_parents(cfg.generator, gen.parents, cfg.parents)
    elif cfg.parents not in (None, 2):
        raise ChimeraMixError(f"--parents {cfg.parents} needs --generator: only ChimeraMix composes more than two images")
    prep = prepare_data(cfg)
    speed = SpeedOptions.resolve(prep.device, cfg.amp, cfg.channels_last, cfg.fused, cfg.compile)
    cfg = resolve_classifier(cfg, prep.train.image_size[0], len(prep.subset))
    if gen is not None:
        # Stored as the generator's K, and as None for pairs (the config pair runs had before the option existed).
        cfg = replace(cfg, parents=None if gen.parents == 2 else gen.parents)
    else:
        cfg = replace(cfg, parents=None)
    check_classifier_fits(cfg, len(prep.train.classes), prep.train.image_size, prep.device)  # before the run folder
    if gen_info is not None:
        check_generator_split(gen_info, prep.split.key(), cfg.generator)
    method = spec.build(*_method_options(cfg, gen, prep.train.image_size[0]))
    if method.needs_generator and gen_info is None:
        raise ChimeraMixError(f"method '{cfg.method}' needs a trained generator: pass --generator <fit-generator run folder>")
    if gen_info is not None and not method.needs_generator:
        raise ChimeraMixError(f"method '{cfg.method}' does not use a generator: drop --generator, or use --method chimeramix")
    identity = classifier_identity(cfg, gen, gen_info.get("config_tag", "") if gen_info is not None else "")
    method.label += identity.label
    # Decode the test set before anything is written: a corrupt or mis-sized test image must fail now, not after training.
    test = prep.source.load("test")
    if tuple(test.classes) != tuple(prep.train.classes):
        raise ChimeraMixError(f"the test set's classes differ from the training set's in {prep.source.name}")
    if test.image_size != prep.train.image_size:
        raise ChimeraMixError(
            f"test images are {test.image_size[0]}x{test.image_size[1]} but training images {prep.train.image_size[0]}x"
            f"{prep.train.image_size[1]}: pass --image-size N to bring both to N x N"
        )

    if gen_info is not None:  # its weights are read before the run folder is made: a damaged file fails here
        G, _ = load_generator(cfg.generator, prep.device)
        G = speed.prepare_module(G)

    config = {**to_dict(cfg), "method": method.name, "method_options": method.recorded_options, "fingerprint": prep.split.fingerprint}
    with open_stage("classifier", "clf", identity.suffix, cfg, config, prep, root, resume, force, progress,
                    overrides) as stage:
        if stage.already_finished:
            result = stage.run.info()["result"]
            return ClassifierResult(stage.out, result["accuracy"], result, already_finished=True)
        stage.begin()
        segments = None
        if (method.needs_generator and method.options.get("mask") == "seg") or method.needs_segments:
            segments = _segments_at_native(prep.subset, gen, method.options, cfg.seg_view)
        if (warning := bf16_warning(prep.device, speed)) is not None:
            progress.message(warning)
        progress.message(f"classifier {cfg.arch} ({method.label}): {len(prep.subset)} images, {cfg.steps} steps on {prep.device}")
        rng = seeded_generator(prep.device, cfg.seed, stream=2)
        data = DeviceData(prep.subset, prep.device, cfg.seed, segments)
        trainer = ClassifierTrainer(cfg, data, rng, method, G, speed)
        t0 = time.perf_counter()
        losses = stage.train(trainer.state(), trainer.step, record="mean")
        train_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        pred = trainer.predict(test.images, cfg.eval_batch, progress)
        metrics = classification_metrics(pred, test.labels, list(test.classes))
        eval_s = time.perf_counter() - t0

        result = {
            "kind": "classifier", "method": method.name, "label": method.label, "accuracy": metrics["accuracy"],
            "mean_class_accuracy": metrics["mean_class_accuracy"], "test_size": metrics["test_size"],
            "per_class": metrics["per_class"], "confusion": metrics["confusion"], "classes": list(test.classes),
            "split": prep.split.key(), "config": config, "device": str(prep.device),
            "generator_run": str(cfg.generator) if cfg.generator else None,
            "generator_config": generator_recipe(gen_info["config"]) if gen_info is not None else None,
            "train_seconds": train_s, "eval_seconds": eval_s,
            "final_losses": losses,
            # per image, so a report can show which test images a method gets right that another gets wrong
            "test_predictions": pred.tolist(), "test_fingerprint": test.fingerprint,
        }
        ckpt.save_tensors(stage.run.file(WEIGHTS_FILE), ckpt.module_tensors("classifier", trainer.model),
                          {"config": config, "split": prep.split.key(), "classes": list(test.classes)})
        write_json(stage.run.file("result.json"), result)
        save_confusion(stage.run.file("confusion.png"), metrics["confusion"], list(test.classes),
                       title=f"{method.label}: {100 * metrics['accuracy']:.2f}%")
        save_cam_panels(stage.run.file(CAMS_FILE), trainer.model, test, pred, prep.device, method.label)
        write_text(stage.run.file("report.md"), run_markdown(result))
        if stage.tb is not None:
            _log_test(stage.tb, result, cfg.steps)
        # run.json stays small (experiment reads it to reuse runs): the per-image predictions live in result.json only
        stage.finish(result={k: v for k, v in result.items() if k != "test_predictions"})
        return ClassifierResult(stage.out, metrics["accuracy"], result)


CAMS_FILE = "cams.png"


def save_cam_panels(path, model, test, pred: torch.Tensor, device, label: str, per_kind: int = 4) -> None:
    """cams.png: the first `per_kind` test images the run classifies right and the first it gets wrong (in test
    order, so every run of a data set shows the same ones where it can), each with the class activation maps of
    its predicted and its true class (chimeramix/cam.py)."""
    from ..augment import normalize
    from ..cam import class_maps, feature_map, save_panels

    right = (pred == test.labels).nonzero().flatten()[:per_kind].tolist()
    wrong = (pred != test.labels).nonzero().flatten()[:per_kind].tolist()
    picked = right + wrong
    if not picked:
        return
    was = model.training
    model.eval()
    x = normalize(test.images[picked].to(device))
    with torch.no_grad():  # one forward: both classes' maps and the probabilities come from its feature map
        fmap = feature_map(model, x).float()
        probs = model.fc(fmap.mean((2, 3))).softmax(1).cpu()
    _, pm = class_maps(model, fmap, pred[picked].to(device), x.shape[-2:])
    _, tm = class_maps(model, fmap, test.labels[picked].to(device), x.shape[-2:])
    model.train(was)
    rows = [{"image": test.images[i], "pred_cam": pm[j], "pred_label": test.classes[int(pred[i])],
             "probability": float(probs[j, int(pred[i])]),
             "true_cam": tm[j], "true_label": test.classes[int(test.labels[i])], "correct": i in right}
            for j, i in enumerate(picked)]
    save_panels(path, rows, title=f"{label}: {len(right)} test images classified right, then {len(wrong)} wrong")


def _log_test(tb, result: dict, step: int) -> None:
    """The test set's accuracies in TensorBoard (per class: recall, the share of its images classified right), and
    the run's config as hyperparameters next to them."""
    final = {"test/accuracy": result["accuracy"], "test/mean_class_accuracy": result["mean_class_accuracy"]}
    for tag, v in final.items():
        tb.scalar(tag, v, step)
    for r in result["per_class"]:
        tb.scalar(f"test/class/{r['class']}", r["recall"], step)
    tb.hparams({**result["config"], "label": result["label"]}, final)


def finished_classifier(run_dir: str | Path) -> dict:
    """run.json of a finished fit-classifier run that has its weights; anything else is refused in one line."""
    return finished_run(run_dir, "classifier")


@dataclass
class TrainedClassifier:
    """A finished run's network (on the CPU, as built) with what reading new images needs."""

    model: torch.nn.Module
    config: dict
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    info: dict


def load_classifier_network(run_dir: str | Path) -> TrainedClassifier:
    """The weights of a finished fit-classifier run in a freshly built network (what predict and fid start from)."""
    run_dir = Path(run_dir)
    info = finished_classifier(run_dir)
    tensors, meta = ckpt.load_tensors(run_dir / WEIGHTS_FILE, advice=retrain_advice("classifier"))
    cfg = meta.get("config") or info["config"]
    classes = tuple(meta.get("classes") or info["result"]["classes"])
    size = (meta.get("split") or info["result"]["split"])["image_size"]
    model = network_of(cfg, len(classes))
    ckpt.load_module("classifier", model, tensors)
    return TrainedClassifier(model, cfg, classes, (int(size[0]), int(size[-1])), info)


def _check_parents(gen_dir, theirs: int, asked) -> None:
    """The generator learned compositions of its own K parents: another K is refused, as another mask kind is."""
    if asked is not None and asked != theirs:
        raise ChimeraMixError(
            f"the generator in {gen_dir} was trained with --parents {theirs}, this run asks for {asked}: "
            f"drop --parents to use the generator's, or train a generator with --parents {asked}"
        )


def _read_generator_info(path) -> dict:
    return finished_run(path, "generator")


def _segments_at_native(subset: ImageSet, gen_cfg: GeneratorConfig | None, opts: dict, view: str = "classifier") -> torch.Tensor:
    """Felzenszwalb maps computed once, kept at the classifier's resolution.

    view 'classifier': segment the classifier's own images (the public code segments its 32 px view, about
    5 segments per CIFAR image); 'generator': segment as the generator run did (32 px data at 64 px, ~17).
    """
    size = subset.images.shape[-1]
    g = GeneratorConfig() if gen_cfg is None else gen_cfg  # without a generator its unresolved fields leave it to opts
    seg_size = size if view == "classifier" else (g.seg_size or g.work_size or opts.get("work_size") or size)
    scale = g.seg_scale or opts.get("seg_scale") or 60
    min_size = g.seg_min_size or opts.get("seg_min_size") or 60
    return masks.segments_at(subset.images, seg_size, size, scale, min_size, g.seg_sigma or 0.8, as_float=g.seg_input == "float")
