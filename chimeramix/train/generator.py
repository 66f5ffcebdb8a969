"""Stage 1: fit the mixing generator (encoder, mixer, decoder) against a PatchGAN discriminator."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .. import masks
from ..augment import CropFlip, denormalize, normalize, resize_uint8
from ..config import GeneratorConfig, check_config, generator_from_record, generator_run_config, resolve_generator
from ..data.device import DeviceData
from ..data.imageset import ImageSet
from ..errors import ChimeraMixError
from ..losses import laplacian_sum, lsgan, reconstruction
from ..memory import check_generator_fits
from ..models import MixingGenerator, PatchDiscriminator
from ..plots import grid_picture, save_grid
from ..progress import SILENT, Progress
from ..runs import lost_weights, retrain_advice
from ..speed import SpeedOptions, bf16_warning
from .loop import TrainState
from .setup import config_overrides, generator_tag, prepare_data, seeded_generator
from .stage import open_stage

WEIGHTS_FILE = "generator.safetensors"


@dataclass
class GeneratorResult:
    run_dir: Path
    steps: int
    losses: dict
    already_finished: bool = False

    @property
    def samples(self) -> Path:
        return self.run_dir / "samples.png"


def lr_factor(step: int, total: int, milestones, gamma: float, warmup: float = 0.0) -> float:
    """x gamma at each milestone (fractions of training): the paper's epochs 60/120/160 of 200; with `warmup`, a
    linear ramp over that fraction of the steps first (a short run's high lr would otherwise start unstable)."""
    f = gamma ** bisect.bisect_right([m * total for m in milestones], step)
    ramp = warmup * total
    return f * min(1.0, (step + 1) / ramp) if ramp >= 1 else f


class GeneratorTrainer:
    """Models, optimizers and the per-step update; usable without a run folder (tests, benchmarks)."""

    def __init__(self, cfg: GeneratorConfig, data: DeviceData, rng: torch.Generator, speed: SpeedOptions | None = None):
        self.cfg, self.data, self.rng = cfg, data, rng
        self.d_lr = cfg.d_lr if cfg.d_lr is not None else cfg.lr
        self._last_d = torch.zeros((), device=data.device)  # what a step without a D update logs as its D loss
        dev = data.device
        self.speed = sp = speed or SpeedOptions.resolve(dev, cfg.amp, cfg.channels_last, cfg.fused, cfg.compile)
        self.G = sp.prepare_module(MixingGenerator(cfg.ngf, cfg.n_res, cfg.decoder_res_blocks).to(dev))
        self.D = sp.prepare_module(PatchDiscriminator(cfg.ndf).to(dev))
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas, **sp.optimizer_kwargs())
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.d_lr, betas=betas, **sp.optimizer_kwargs())
        self.feature_size = MixingGenerator.feature_size(cfg.work_size)
        self.masks = masks.MaskSpec.from_config(cfg)
        self.parents = self.masks.parents
        self._outputs = sp.compiled(self.G.train_outputs)
        self._D = sp.compiled(self.D)

    def state(self) -> TrainState:
        return TrainState({"generator": self.G, "discriminator": self.D}, {"g": self.opt_g, "d": self.opt_d}, self.rng)

    def batch(self, step: int):
        """K parents per sample (the batch's image and K - 1 same-class partners), each crop + flip augmented, a
        one-hot K-way mask of the configured kind for `step`, and a way to draw another mask."""
        cfg, data, rng = self.cfg, self.data, self.rng
        i1 = data.batch_indices(step, cfg.batch_size)
        idx = [i1, *data.parent_indices(i1, self.parents, rng)]
        crops = [CropFlip.sample(len(i1), cfg.work_size, rng, data.device) for _ in idx]
        xs = [self.speed.inputs(normalize(p.apply(data.images[i]))) for p, i in zip(crops, idx)]
        segs = [p.apply(data.segments[i]) for p, i in zip(crops, idx)] if cfg.mask == "seg" else None

        def draw():
            return self.masks.sample(len(i1), self.feature_size, rng, data.device, segs, data.num_segments)

        return xs, draw(), draw

    def step(self, step: int, total: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        f = lr_factor(step, total, cfg.lr_milestones, cfg.lr_gamma, cfg.warmup)
        for opt, lr in ((self.opt_g, cfg.lr), (self.opt_d, self.d_lr)):
            for g in opt.param_groups:
                g["lr"] = lr * f
        xs, mask, draw_mask = self.batch(step)
        autocast = self.speed.autocast(self.data.device)
        with autocast:
            recs, mix = self._outputs(xs, mask)
        recs, mix = [r.float() for r in recs], mix.float()  # losses in fp32 whatever the forward ran in

        # Generator update; D's weights are frozen for it so no gradient is computed for them.
        self.D.requires_grad_(False)
        loss_rec = reconstruction(recs, xs)
        loss_lap = laplacian_sum(recs, xs, cfg.lap_levels)
        with autocast:
            d_mix = self._D(mix)
        loss_adv = lsgan(d_mix.float(), True)
        loss_g = cfg.w_rec * loss_rec + cfg.w_lap * loss_lap + cfg.w_adv * loss_adv
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()

        # keys in the order metrics.jsonl always had; "d" is the last D loss until this step's D update replaces it
        losses = {"rec": loss_rec.detach(), "lap": loss_lap.detach(), "adv": loss_adv.detach(), "d": self._last_d,
                  "g": loss_g.detach()}
        if step % cfg.d_every:  # no D update: no mask or coin is drawn for it either
            return losses
        # Discriminator update, real vs generated in one batched call.
        self.D.requires_grad_(True)
        if cfg.d_step == "fresh":
            # The public code: a new mask, the updated G's composition, and one parent as the real (x1 or x2, one
            # coin per batch); a uniform parent when K > 2.
            with torch.no_grad(), autocast:
                fake = self.G(xs, draw_mask()).float()
            real = self._real_parent(xs)
        else:
            fake, real = mix.detach(), xs[0]
        with autocast:
            d = self._D(torch.cat([real, fake])).float()
        n = xs[0].shape[0]
        loss_d = lsgan(d[:n], True) + lsgan(d[n:], False)
        if cfg.d_step != "fresh":
            loss_d = 0.5 * loss_d
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        self._last_d = losses["d"] = loss_d.detach()
        return losses

    def _real_parent(self, xs):
        """One parent, drawn uniformly, as D's real image: the public code's coin `u < 0.5` picks x2 for a pair, so
        parent K - 1 - floor(K u) (picked by index_select on the device: no host sync)."""
        k = len(xs)
        u = torch.rand((), generator=self.rng, device=xs[0].device)
        j = (k - 1 - (u * k).long().clamp_(max=k - 1)).reshape(1)
        return torch.stack(xs).index_select(0, j)[0]


def device_data(cfg: GeneratorConfig, subset, device, seed: int) -> DeviceData:
    """The subset at the working resolution on the device, with its segmentations if the mask needs them."""
    images = resize_uint8(subset.images, cfg.work_size)
    segments = None
    if cfg.mask == "seg":
        segments = masks.segments_at(subset.images, cfg.seg_size, cfg.work_size, cfg.seg_scale, cfg.seg_min_size, cfg.seg_sigma,
                                 as_float=cfg.seg_input == "float")
    return DeviceData(ImageSet(images, subset.labels, subset.classes), device, seed, segments)


def fit_generator(cfg: GeneratorConfig, *, resume: bool | str = False, force: bool = False, progress: Progress = SILENT,
                  root: str | Path = "checkpoints") -> GeneratorResult:
    """Train the mixing generator; returns where the run landed and its final losses."""
    check_config(cfg)  # mask kind and rules included: they fail before any data is read
    overrides = config_overrides(cfg)  # of the config as asked for, before resolving fills it in
    prep = prepare_data(cfg)
    speed = SpeedOptions.resolve(prep.device, cfg.amp, cfg.channels_last, cfg.fused, cfg.compile)
    cfg = resolve_generator(cfg, prep.train.image_size[0], len(prep.subset))
    check_generator_fits(cfg, prep.device)  # before the run folder exists: an extreme --ngf leaves nothing behind
    config = {**generator_run_config(cfg), "fingerprint": prep.split.fingerprint}
    with open_stage("generator", "gen", generator_tag(cfg), cfg, config, prep, root, resume, force, progress,
                    overrides) as stage:
        if stage.already_finished:
            info = stage.run.info()
            return GeneratorResult(stage.out, info["step"], info.get("losses", {}), already_finished=True)
        stage.begin()
        if (warning := bf16_warning(prep.device, speed)) is not None:
            progress.message(warning)
        progress.message(f"generator: {len(prep.subset)} images ({cfg.spc} per class) at {cfg.work_size}x{cfg.work_size} on {prep.device}")
        rng = seeded_generator(prep.device, cfg.seed, stream=1)
        data = device_data(cfg, prep.subset, prep.device, cfg.seed)
        trainer = GeneratorTrainer(cfg, data, rng, speed)
        total = cfg.steps
        step = lambda s: trainer.step(s, total)  # noqa: E731
        if stage.tb is not None:
            step = _with_samples(step, stage.tb, trainer.G, data, cfg)
        t0 = time.perf_counter()
        losses = stage.train(trainer.state(), step, record="step")
        train_s = time.perf_counter() - t0
        save_generator(stage.run.file(WEIGHTS_FILE), trainer.G, trainer.D, config, prep.split.key())
        columns = sample_columns(trainer.G, data, cfg)
        save_grid(stage.run.file("samples.png"), columns)
        if stage.tb is not None:
            stage.tb.image("samples", grid_picture(columns), total)
            stage.tb.hparams(config, {f"train/{k}": v for k, v in losses.items()})
        # as the classifier's result: this process's training time (a resumed run counts its last part only)
        stage.finish(losses=losses, train_seconds=train_s)
        return GeneratorResult(stage.out, total, losses)


def _with_samples(step_fn, tb, G, data: DeviceData, cfg: GeneratorConfig):
    """step_fn, plus the sample grid in TensorBoard every cfg.sample_every steps (default: ten over the run)."""
    every = cfg.sample_every or max(1, cfg.steps // 10)

    def step(s: int):
        out = step_fn(s)
        if (s + 1) % every == 0 and s + 1 < cfg.steps:  # the last one is taken from the finished generator
            tb.image("samples", grid_picture(sample_columns(G, data, cfg)), s + 1)
        return out

    return step


def save_generator(path, G, D, config: dict, split_key: dict) -> None:
    tensors = {**ckpt.module_tensors("generator", G), **ckpt.module_tensors("discriminator", D)}
    ckpt.save_tensors(path, tensors, {"config": config, "split": split_key})


def load_generator(run_dir: str | Path, device) -> tuple[MixingGenerator, dict]:
    """The frozen generator of a finished run (eval mode, no gradients) and its run.json."""
    from ..runs import read_run

    run_dir = Path(run_dir)
    info = read_run(run_dir, "generator")
    if info.get("status") != "finished":
        raise ChimeraMixError(f"the generator run in {run_dir} has not finished: finish it with `chimeramix fit-generator --resume --out {run_dir}`")
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise ChimeraMixError(lost_weights(run_dir, "generator"))
    c = generator_from_record(info["config"])
    G = MixingGenerator(c.ngf, c.n_res, c.decoder_res_blocks)
    tensors, _ = ckpt.load_tensors(run_dir / WEIGHTS_FILE, advice=retrain_advice("generator"))
    ckpt.load_module("generator", G, tensors)
    G.to(device).eval().requires_grad_(False)
    return G, info


def save_samples(path, G: MixingGenerator, data: DeviceData, cfg: GeneratorConfig, rows: int = 8) -> None:
    """Figure 2 of the paper: the K parents, their K reconstructions, then three masks with their compositions
    (a pair's mask white where x1 is kept; with K > 2 parent j at grey level 1 - 2 j / (K - 1))."""
    save_grid(path, sample_columns(G, data, cfg, rows))


@torch.no_grad()
def sample_columns(G: MixingGenerator, data: DeviceData, cfg: GeneratorConfig, rows: int = 8) -> list[torch.Tensor]:
    """The columns of save_samples' picture, in [0, 1]; the same images and masks every time (their own seeded
    generator), so pictures taken during training show one composition improving. The training RNG is not used."""
    k = cfg.parents
    rng = torch.Generator(device=data.device).manual_seed(12345)
    cls = torch.arange(rows, device=data.device) % len(data.classes)
    # the first K images of each shown class (clamped where a class has fewer: a pair's partner may be itself)
    idx = [data.of_class(cls, j) for j in range(k)]
    xs = [normalize(data.images[i]) for i in idx]
    was_training = G.training
    G.eval()
    fs = G.encoder(torch.cat(xs)).split(rows)
    cols = [*xs, *(G.decoder(f) for f in fs)]
    spec = masks.MaskSpec.from_config(cfg)
    segs = [data.segments[i] for i in idx] if cfg.mask == "seg" else None
    for _ in range(3):
        w = spec.sample(rows, fs[0].shape[-1], rng, data.device, segs, data.num_segments)
        # shown at the images' resolution so the picture lines up with the parents
        cols += [masks.assignment_picture(w, xs[0].shape[-1]), G.decoder(G.mix(fs, w))]
    G.train(was_training)
    return [denormalize(c) for c in cols]
