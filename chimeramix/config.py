"""Dataclass configs with named presets; explicit options override a preset.

Fields left as None depend on the data (image size, dataset) and are filled
by `resolve(...)` when a run starts; run.json stores the resolved config.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import ChimeraMixError

# No torch here (masks.py imports it lazily below): the CLI reads the defaults from these dataclasses for its help
# texts, and `chimeramix --help` stays quick.

D_STEPS = ("fresh", "reuse")
SEG_VIEWS = ("classifier", "generator")

PRESETS = ("paper", "cpu", "fast")


def repeats_per_epoch(spc: int, base: int = 500) -> int:
    """The paper repeats the subset max(base // spc, 1) times per epoch (base 500; STL-10 classifier 120)."""
    return max(base // spc, 1)


@dataclass
class DataOptions:
    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    spc: int = 5
    seed: int = 0
    device: str = "auto"
    # speed switches (see chimeramix/speed.py): auto = bf16 on CUDA only, channels_last and fused everywhere
    amp: str = "auto"
    channels_last: str = "auto"
    fused: str = "auto"
    compile: str = "off"
    # TensorBoard event files in the run folder (chimeramix/tblog.py): auto = when the package is installed
    tensorboard: str = "auto"


# Options that do not change what a run computes; resuming or reusing a run may change them.
RUNTIME_FIELDS = ("device", "data_dir", "log_every", "checkpoint_every", "checkpoint_minutes", "out", "eval_batch", "amp",
                  "channels_last", "fused", "compile", "tensorboard", "sample_every")


# The default preset, decided here for every command: a single stage (fit-generator, fit-classifier) is a first
# try, so it runs the minutes-long `fast` preset; experiment and sweep make the comparison tables of the paper, so
# they run its protocol (`paper`) unless told otherwise.
STAGE_PRESET = "fast"
TABLE_PRESET = "paper"


@dataclass
class GeneratorConfig(DataOptions):
    preset: str = STAGE_PRESET
    mask: str = "seg"
    # How masks are drawn (chimeramix/masks.py, docs/fidelity.md); the defaults are the public code's rules.
    seg_mask: str = "range"  # range: a label range of the partner's segments; bernoulli: each own segment with p 0.5
    grid_offset: str = "batch"  # batch: one crop offset per batch; sample: one per sample
    mask_resize: str = "nearest"  # pixel mask -> feature size: nearest or majority
    seg_input: str = "float"  # Felzenszwalb on the [-1, 1] image (public code) or on uint8
    # Images per composition: 2 is the paper's pairs; more is an extension (docs/fidelity.md). run.json stores it only
    # when it is not 2 (`generator_run_config`), so pair runs keep the config they had before the option existed.
    parents: int = 2
    d_step: str = "fresh"  # fresh: D sees a new composition after G's update, real = x1 or x2; reuse: G's composition, real = x1
    work_size: int | None = None  # resolution the generator works at; None: preset rule
    ngf: int = 16
    ndf: int = 16
    n_res: int = 2
    # The public code's decoder computes its residual blocks and discards them; its numbers come from that variant.
    decoder_res_blocks: bool = False
    epochs: int = 200
    repeats: int | None = None  # None: max(500 // spc, 1) (STL-10-sized images: max(30 // spc, 1))
    steps: int | None = None  # total steps; overrides epochs x steps-per-epoch
    batch_size: int | None = None
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    w_rec: float = 1000.0  # times mse(rec1, x1) + mse(rec2, x2), the public code's sum
    w_lap: float = 1.0
    w_adv: float = 1.0
    lap_levels: int = 3  # band-pass levels, no low-pass residual (the public code's LapLoss)
    lr_milestones: tuple[float, ...] = (0.3, 0.6, 0.8)
    lr_gamma: float = 0.2
    # Short-budget levers (issue 28); run.json stores them only when they differ from these defaults
    # (`generator_run_config`), so runs written before they existed keep their config and are reused.
    d_lr: float | None = None  # None: the generator's lr
    d_every: int = 1  # update D every N generator steps (a weaker discriminator)
    warmup: float = 0.0  # linear learning-rate warm-up over this fraction of the steps
    grid_k: int = 4
    seg_scale: float | None = None
    seg_min_size: int | None = None
    seg_sigma: float = 0.8
    seg_size: int | None = None  # resolution segmentations are computed at; None: 64 for 32x32 data (as the paper), else work size
    log_every: int = 25
    # A crash or a scheduler's time limit loses at most this much: 500 steps (half a fast-preset run), or
    # 10 minutes on a slow device, whichever comes first.
    checkpoint_every: int = 500
    checkpoint_minutes: float = 10.0
    # the sample grid of compositions in TensorBoard every N steps; None: ten pictures over the run
    sample_every: int | None = None
    out: str | None = None


GENERATOR_PRESETS = {
    # The published settings: 200 epochs of max(500 // spc, 1) repeats, 32x32 data worked at 64x64.
    "paper": dict(ngf=64, ndf=64, epochs=200),
    # CPU-sized: a quarter of the channels, native resolution, a fixed number of steps.
    # The CPU protocol's short-budget recipe (docs/results.md, "A generator that converges in CPU minutes"): 5x the
    # lr after a 5% warm-up, full lr for 70% of the steps (the paper's 0.3/0.6/0.8 milestones left 300 full-lr
    # steps of 1,000), D updated every 2nd step. At 1,000 steps it reaches the old 4,000-step generator's
    # reconstruction and classifier-space distance in less than the old 1,000-step time.
    "cpu": dict(ngf=16, ndf=16, steps=1000, batch_size=16, lr=1e-3, warmup=0.05, lr_milestones=(0.7, 0.9), d_every=2),
    "fast": dict(ngf=16, ndf=16, steps=1000, batch_size=16),
}


@dataclass
class ClassifierConfig(DataOptions):
    preset: str = STAGE_PRESET
    method: str | None = None  # None: 'chimeramix' with --generator, else 'none'
    generator: str | None = None  # a generator run folder
    mask: str | None = None  # None: the generator run's mask kind (another one is refused)
    parents: int | None = None  # None: the generator run's parent count (another one is refused); stored as None for 2
    # Which view the classifier stage segments for seg masks: 'classifier' (its own images at their resolution,
    # as the public code) or 'generator' (as the generator run segmented them, e.g. 32x32 data at 64x64).
    seg_view: str = "classifier"
    # None: P_GENERATED (below), or the method option p_generated (-o p_generated=...) when that is given; resolved, it is the value used
    p_generated: float | None = None
    arch: str | None = None
    dropout: float = 0.3
    # Fine-tuning an ImageNet backbone (models/backbones.py): its weights, the resolution it sees the batches at,
    # and the backbone's own learning rate (the head's is lr).
    pretrained: bool = False
    weights: str | None = None  # None: torch's hub cache, or the efficientnet-lite0 weights package
    input_size: int | None = None  # None: the backbone's default (128), the data's own for the Wide ResNets
    backbone_lr: float | None = None  # None: lr x BACKBONE_LR_FACTOR for a pretrained backbone, else lr
    epochs: int = 200
    repeats: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    method_options: dict = field(default_factory=dict)
    eval_batch: int = 500
    log_every: int = 50
    checkpoint_every: int = 500  # as the generator's: at most half a fast-preset run is lost
    checkpoint_minutes: float = 10.0
    out: str | None = None


CLASSIFIER_PRESETS = {
    "paper": dict(epochs=200),
    # CPU-sized: WRN-16-2 and a short run; the paper's lr (4.6e-3) is tuned for 100,000 steps and barely
    # moves a network in 1,000 (digits, spc 10, 600 steps: 9.9% at the paper's lr/wd, 87.7% at these).
    # The CPU protocol: the fast network, 4x the steps (where ChimeraMix's lead showed on every seed, docs/results.md).
    "cpu": dict(arch="wrn16-2", steps=4000, lr=0.05, weight_decay=5e-4),
    "fast": dict(arch="wrn16-2", steps=1000, lr=0.05, weight_decay=5e-4),
}


def _shown(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:g}" if isinstance(v, float) else str(v)


def default_text(cls, name: str) -> str:
    """A field's default as the presets set it, for help texts: '0.0002', or 'paper 64, cpu 16, fast 16'."""
    table = GENERATOR_PRESETS if cls is GeneratorConfig else CLASSIFIER_PRESETS
    base = next(f for f in fields(cls) if f.name == name).default
    values = {p: table[p].get(name, base) for p in PRESETS}
    if len(set(map(repr, values.values()))) == 1:
        return _shown(base)
    return ", ".join(f"{p} {_shown(v)}" for p, v in values.items())


def _check_preset(name: str) -> None:
    if name not in PRESETS:
        raise ChimeraMixError(f"unknown --preset '{name}': choose one of {', '.join(PRESETS)}")


def make_config(cls, preset: str = STAGE_PRESET, **overrides):
    """A config from a preset, then overrides (None values in overrides are ignored)."""
    _check_preset(preset)
    table = GENERATOR_PRESETS if cls is GeneratorConfig else CLASSIFIER_PRESETS
    names = {f.name for f in fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown config fields: {sorted(unknown)}")
    values = {**table[preset], **{k: v for k, v in overrides.items() if v is not None}, "preset": preset}
    cfg = cls(**values)
    check_config(cfg)
    return cfg


# The largest seed every consumer takes (numpy's and torch's generators get seed-derived values that must fit).
MAX_SEED = 2**32 - 1
# The paper's replacement rate: half the batches become compositions (ChimeraMix; GridMix and SegMix alike).
P_GENERATED = 0.5


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _whole(cfg, name: str, low: int, high: int | None = None, optional: bool = False) -> None:
    v = getattr(cfg, name)
    if v is None and optional:
        return
    rng = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        if isinstance(v, bool):
            raise TypeError
        n = operator.index(v)
    except TypeError:
        raise ChimeraMixError(f"{_flag(name)} must be a whole number {rng} (got {v!r})") from None
    if n < low or (high is not None and n > high):
        raise ChimeraMixError(f"{_flag(name)} must be a whole number {rng} (got {v})")


def _real(cfg, name: str, *, above: float | None = None, at_least: float | None = None, below: float | None = None,
          at_most: float | None = None, optional: bool = False) -> None:
    v = getattr(cfg, name)
    if v is None and optional:
        return
    parts = ([f"> {above:g}"] if above is not None else []) + ([f">= {at_least:g}"] if at_least is not None else []) + \
            ([f"< {below:g}"] if below is not None else []) + ([f"<= {at_most:g}"] if at_most is not None else [])
    if at_least is not None and at_most is not None:
        rng = f"in [{at_least:g}, {at_most:g}]"
    elif at_least is not None and below is not None:
        rng = f"in [{at_least:g}, {below:g})"
    else:
        rng = " and ".join(parts)
    try:
        if isinstance(v, bool):
            raise TypeError
        x = float(v)
    except (TypeError, ValueError):
        raise ChimeraMixError(f"{_flag(name)} must be a number {rng} (got {v!r})") from None
    ok = math.isfinite(x) and (above is None or x > above) and (at_least is None or x >= at_least) and \
        (below is None or x < below) and (at_most is None or x <= at_most)
    if not ok:
        raise ChimeraMixError(f"{_flag(name)} must be a finite number {rng} (got {v})")


def check_config(cfg) -> None:
    """Refuse values no run can use, each in one line naming the option and its valid range.

    Called by make_config and again when a stage starts (configs built by hand), so nothing is read or
    written before a bad value is refused.
    """
    _no_empty_strings(cfg)
    _whole(cfg, "spc", 1)
    _whole(cfg, "seed", 0, MAX_SEED)
    _whole(cfg, "image_size", 8, optional=True)
    _whole(cfg, "epochs", 1)
    _whole(cfg, "steps", 1, optional=True)
    _whole(cfg, "batch_size", 1, optional=True)
    _whole(cfg, "repeats", 1, optional=True)
    _whole(cfg, "log_every", 1)
    _whole(cfg, "checkpoint_every", 1)
    _real(cfg, "checkpoint_minutes", above=0, optional=True)
    from .tblog import resolve as resolve_tensorboard

    resolve_tensorboard(cfg.tensorboard)  # --tensorboard without the package: refused before anything is read
    if isinstance(cfg, GeneratorConfig):
        _real(cfg, "lr", above=0)
        _real(cfg, "beta1", at_least=0, below=1)
        _real(cfg, "beta2", at_least=0, below=1)
        for name in ("w_rec", "w_lap", "w_adv", "seg_sigma"):
            _real(cfg, name, at_least=0)
        _real(cfg, "lr_gamma", above=0)
        _real(cfg, "d_lr", above=0, optional=True)
        _whole(cfg, "d_every", 1)
        _whole(cfg, "sample_every", 1, optional=True)
        _real(cfg, "warmup", at_least=0, below=1)
        check_milestones(cfg.lr_milestones)
        for name in ("ngf", "ndf", "lap_levels", "grid_k"):
            _whole(cfg, name, 1)
        _whole(cfg, "n_res", 0)
        _real(cfg, "seg_scale", above=0, optional=True)
        _whole(cfg, "seg_min_size", 1, optional=True)
        _whole(cfg, "seg_size", 8, optional=True)
        _whole(cfg, "work_size", 1, optional=True)  # its own rule (multiple of 4, >= 32) follows in resolve_generator
        check_generator_choices(cfg)
        from .masks import check_parents

        check_parents(cfg.parents, cfg.spc)
    else:
        _real(cfg, "p_generated", at_least=0, at_most=1, optional=True)
        _real(cfg, "dropout", at_least=0, below=1)
        _real(cfg, "lr", above=0, optional=True)
        _real(cfg, "weight_decay", at_least=0, optional=True)
        _real(cfg, "momentum", at_least=0, below=1)
        _real(cfg, "backbone_lr", at_least=0, optional=True)
        _whole(cfg, "input_size", 32, 1024, optional=True)
        _whole(cfg, "eval_batch", 1)
        check_backbone(cfg)
        if not isinstance(cfg.method_options, dict):
            raise ChimeraMixError(f"method options must be KEY=VALUE pairs (got {cfg.method_options!r})")
        replacement_rate(cfg)
        from .masks import check_choice, check_parents

        check_choice("--seg-view", cfg.seg_view, SEG_VIEWS)
        if cfg.parents is not None:
            check_parents(cfg.parents, cfg.spc)


def _no_empty_strings(cfg) -> None:
    # '' is falsy: `--arch ''` would fall through to the preset's network and `--out ''` to the current folder
    for f in fields(cfg):
        if getattr(cfg, f.name) == "":
            raise ChimeraMixError(f"--{f.name.replace('_', '-')} is empty: give a value, or leave the option out for its default")


def replacement_rate(cfg) -> float:
    """The replacement rate a classifier run uses: --p-generated and -o p_generated are one setting, given once."""
    opt = cfg.method_options.get("p_generated")
    if opt is None:
        return P_GENERATED if cfg.p_generated is None else float(cfg.p_generated)
    if cfg.p_generated is not None:
        try:
            same = float(opt) == float(cfg.p_generated)
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ChimeraMixError(
                f"--p-generated {cfg.p_generated} and -o p_generated={opt} disagree: give the probability once"
            )
    return opt  # checked as a probability by the method that uses it


def to_dict(cfg) -> dict:
    d = asdict(cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d


# Generator fields added after runs existed, with the value every older run trained with: stored only when different.
LATER_GENERATOR_FIELDS = {"parents": 2, "d_lr": None, "d_every": 1, "warmup": 0.0}


def generator_run_config(cfg: GeneratorConfig) -> dict:
    """The config a generator run stores: every field, less those of LATER_GENERATOR_FIELDS at their old value (so
    runs written before the option existed still match and are reused); readers take a missing one as that value."""
    d = to_dict(cfg)
    for k, old in LATER_GENERATOR_FIELDS.items():
        if k in d and d[k] == old:
            del d[k]
    return d


def check_milestones(milestones) -> None:
    """LR milestones are increasing fractions of training in (0, 1)."""
    try:
        ms = [float(m) for m in milestones]
    except (TypeError, ValueError):
        raise ChimeraMixError(f"--lr-milestones must be fractions of training such as 0.3,0.6,0.8 (got {milestones!r})") from None
    if any(not (0 < m < 1) for m in ms) or ms != sorted(ms):
        raise ChimeraMixError(f"--lr-milestones must be increasing fractions of training in (0, 1), such as 0.3,0.6,0.8 (got {','.join(f'{m:g}' for m in ms)})")


def generator_from_record(config: dict) -> GeneratorConfig:
    """A generator run's stored config (run.json's "config") as today's GeneratorConfig, the one shape its readers
    use: a field an older run did not store takes the value that run trained with (LATER_GENERATOR_FIELDS, else
    the field's default, which older runs always had), and keys that are not fields (the split's fingerprint) are
    left out. The stored dict itself stays what reuse checks, export's config hash and report's recipe compare."""
    names = {f.name for f in fields(GeneratorConfig)}
    values = {**LATER_GENERATOR_FIELDS, **{k: v for k, v in config.items() if k in names}}
    values["parents"] = int(values["parents"] or 2)
    values["lr_milestones"] = tuple(values.get("lr_milestones", GeneratorConfig.lr_milestones))
    return GeneratorConfig(**values)


# The encoder halves twice (so a multiple of 4), and the PatchGAN discriminator's four stride-2 convolutions
# leave nothing to normalise below 32 px.
MIN_WORK_SIZE = 32


def check_generator_choices(cfg: GeneratorConfig) -> None:
    """Refuse an unknown mask kind, mask rule, segmentation input or D step in one line (before any work)."""
    from .masks import SEG_INPUTS, MaskSpec, check_choice

    MaskSpec.from_config(cfg)
    check_choice("--seg-input", cfg.seg_input, SEG_INPUTS)
    check_choice("--d-step", cfg.d_step, D_STEPS)


def paper_work_size(image_size: int) -> int:
    """The paper's working resolution: 32 px data is worked at 64 px (its generator and its GridMix/SegMix ablation),
    larger images at their own size.

    The `paper` generator and GridMix/SegMix under every preset use it; the `cpu` and `fast` generators work at the
    data's own size to save compute. Masks keep their geometry in image pixels at either resolution (a 4 x 4 grid
    stretched by a quarter has cells of 10 px on 32 px images on average: exactly so from 64 px, 8 or 12 px from the
    `cpu` generator's 8 x 8 features), so GridMix/SegMix rows compare with ChimeraMix rows of any preset.
    """
    return 2 * image_size if image_size <= 32 else image_size


def resolve_generator(cfg: GeneratorConfig, image_size: int, n_train: int) -> GeneratorConfig:
    """Fill data-dependent fields: working resolution, batch size, segmentation parameters, steps."""
    paper = cfg.preset == "paper"
    small = image_size <= 64
    if cfg.work_size is not None and (cfg.work_size % 4 or cfg.work_size < MIN_WORK_SIZE):
        raise ChimeraMixError(
            f"--work-size {cfg.work_size} does not fit the generator: it needs a multiple of 4 and at least {MIN_WORK_SIZE} "
            f"(e.g. --work-size {max(MIN_WORK_SIZE, -(-cfg.work_size // 4) * 4)})"
        )
    work = cfg.work_size or (paper_work_size(image_size) if paper else image_size)
    work = max(MIN_WORK_SIZE, -(-work // 4) * 4)  # compositions are resized back to the data's size, so rounding up is safe
    batch = cfg.batch_size or (64 if small else 8)
    if cfg.mask == "grid" and cfg.grid_k > work:  # a cell per pixel at most; a huge --grid-k went straight to memory
        raise ChimeraMixError(f"--grid-k {cfg.grid_k} draws more cells per side than the generator's {work} px: "
                              f"use at most {work} (the paper's is 4)")
    seg = 60 if small else 400
    c = replace(cfg, work_size=work, batch_size=batch, seg_scale=cfg.seg_scale or seg, seg_min_size=cfg.seg_min_size or seg,
                seg_size=cfg.seg_size or (64 if image_size <= 32 else work),
                repeats=cfg.repeats or repeats_per_epoch(cfg.spc, 500 if small else 30))
    if c.steps is None:
        c = replace(c, steps=c.epochs * -(-n_train * c.repeats // batch))
    return c


def check_backbone(cfg: ClassifierConfig) -> None:
    """--pretrained, --weights, --input-size and --backbone-lr only where a backbone takes them; the weights file
    found (or refused, naming it) before any data is read."""
    from .models import ARCH_NAMES, BACKBONE_ARCHS

    if cfg.arch is not None and cfg.arch not in ARCH_NAMES:
        raise ChimeraMixError(f"unknown --arch '{cfg.arch}': choose one of {', '.join(ARCH_NAMES)}")
    backbone = cfg.arch in BACKBONE_ARCHS
    names = f"{', '.join(BACKBONE_ARCHS[:-1])} or {BACKBONE_ARCHS[-1]}"
    if cfg.pretrained and not backbone:
        raise ChimeraMixError(f"--pretrained needs an ImageNet backbone: --arch {names} "
                              f"(got {cfg.arch or 'the preset default'})")
    for name, value in (("--weights", cfg.weights), ("--backbone-lr", cfg.backbone_lr)):
        if value is not None and not cfg.pretrained:
            raise ChimeraMixError(f"{name} is for fine-tuning ImageNet weights: add --pretrained (and --arch "
                                  f"{names})")
    if cfg.input_size is not None and not backbone:
        raise ChimeraMixError(f"--input-size resizes batches for an ImageNet backbone (--arch {names}); "
                              "a Wide ResNet sees the data's own resolution (--image-size resizes the data itself)")
    if cfg.pretrained:
        from .models.backbones import weights_file

        weights_file(cfg.arch, cfg.weights)


def method_name(cfg: ClassifierConfig) -> str:
    """The method a classifier run trains with: --method, else ChimeraMix with a generator, else the baseline."""
    return cfg.method or ("chimeramix" if cfg.generator else "none")


# A pretrained backbone's learning rate as a share of the new head's: the head starts from nothing, the backbone
# from ImageNet features a full learning rate would wash out. 0.1 is the common fine-tuning choice; not yet
# measured here (issue 26 part 4).
BACKBONE_LR_FACTOR = 0.1


def resolve_classifier(cfg: ClassifierConfig, image_size: int, n_train: int) -> ClassifierConfig:
    """Fill data-dependent fields: architecture, batch size, lr, weight decay, steps (paper: per dataset size)."""
    small = image_size <= 64
    c = replace(
        cfg,
        p_generated=replacement_rate(cfg),
        arch=cfg.arch or ("wrn16-8" if small else "resnet50"),
        batch_size=cfg.batch_size or (10 if small else 16),
        lr=cfg.lr if cfg.lr is not None else (4.6e-3 if small else 7.4e-3),
        weight_decay=cfg.weight_decay if cfg.weight_decay is not None else (5.3e-3 if small else 4.1e-4),
        repeats=cfg.repeats or repeats_per_epoch(cfg.spc, 500 if small else 120),
        method=method_name(cfg),
    )
    if c.steps is None:
        c = replace(c, steps=c.epochs * -(-n_train * c.repeats // c.batch_size))
    if c.pretrained and c.backbone_lr is None:
        c = replace(c, backbone_lr=c.lr * BACKBONE_LR_FACTOR)
    from .models import is_backbone

    if is_backbone(c.arch, c.pretrained, c.input_size) and c.input_size is None:  # recorded as it is used
        from .models.backbones import BACKBONES

        c = replace(c, input_size=BACKBONES[c.arch].input_size)
    return c
