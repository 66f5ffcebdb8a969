"""The `chimeramix` command line: parses options, shows progress, calls the library."""

from __future__ import annotations

import errno
import functools
import inspect
import json
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer import _click as click  # typer vendors click (0.29): its UsageError is the one raised
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chimeramix import __version__
from chimeramix.config import TABLE_PRESET, P_GENERATED, ClassifierConfig, DataOptions, GeneratorConfig, default_text
from chimeramix.errors import ChimeraMixError

from . import launch as launch_options
from .tables import note_reused, summary_table

app = typer.Typer(
    name="chimeramix",
    help="ChimeraMix: learned compositional augmentation for image classification with few labelled images per class.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # No markup in help texts: rich would read the "[default: ...]" notes written into them as tags and drop them.
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)
STATE = {"debug": False}


def one_line(message: str) -> str:
    """A refusal stays one line even when it quotes a name with a line break in it (a folder, a class)."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _usage_error_in_one_line(self, file=None) -> None:
    # click prints a usage line, a hint and the error (three lines); every other refusal here is one line, exit 2
    where = f"; see `{self.ctx.command_path} --help`" if self.ctx is not None else ""
    err.print(f"[bold red]error:[/bold red] {escape(one_line(self.format_message()))}{where}", highlight=False, soft_wrap=True)


click.exceptions.UsageError.show = _usage_error_in_one_line
DEBUG_HELP = "Show full tracebacks instead of one-line errors. [default: off]"


def _version(value: bool):
    if value:
        out.print(f"chimeramix {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
):
    STATE["debug"] = debug


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which handles it itself): unwinds like Ctrl-C, so run folders are unlocked."""


@contextmanager
def _sigterm_unwinds():
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def handler(signum, frame):
        raise Terminated

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def one_line_errors(fn):
    """Turn ChimeraMixError into one line on stderr and its exit code (2; 130 or 143 for an interrupted run).

    Also gives the command a --debug option, so `chimeramix fit-generator --debug` works as `chimeramix --debug fit-generator`.
    """

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        if debug:
            STATE["debug"] = True
        try:
            with _sigterm_unwinds():
                return fn(*args, **kwargs)
        except ChimeraMixError as e:
            if STATE["debug"]:
                raise
            err.print(f"[bold red]error:[/bold red] {escape(one_line(str(e)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code)
        except OSError as e:
            # A full disk leaves every run folder consistent (atomic writes); only the message was missing.
            if STATE["debug"] or e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG):
                raise
            if e.errno == errno.ENAMETOOLONG:  # the options' paths are checked up front; this is what that missed
                where = f" ({e.filename})" if e.filename else ""
                message = f"a name is too long for the file system{where}: choose shorter names (--out, --data folders)"
            else:
                where = f" while writing {e.filename}" if e.filename else ""
                message = f"the disk is full{where}: free some space, then run the same command again (with --resume for a training run)"
            err.print(f"[bold red]error:[/bold red] {escape(one_line(message))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except KeyboardInterrupt as e:
            if STATE["debug"]:
                raise
            term = isinstance(e, Terminated)
            err.print(f"[bold red]{'terminated' if term else 'interrupted'}[/bold red]")
            raise typer.Exit(143 if term else 130)

    sig = inspect.signature(fn, eval_str=True)  # typer reads the annotations from this signature as they are
    debug_param = inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False,
                                    annotation=Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)])
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), debug_param])
    return wrapper


# Options shared by both stages; Annotated aliases keep each command's signature readable.
Data = Annotated[str, typer.Option("--data", "-d", help="A dataset name (see `chimeramix datasets`) or a folder with train/<class>/ and test/<class>/.")]
DataDir = Annotated[Optional[Path], typer.Option(help="Where named datasets are downloaded to and read from. [default: $CHIMERAMIX_DATA or ~/.cache/chimeramix]")]
ImageSize = Annotated[Optional[int], typer.Option(help="Resize every image to N x N when loading. [default: keep the source's size]")]
Spc = Annotated[int, typer.Option(help="Training images kept per class (the first N of a seeded shuffle).")]
Seed = Annotated[int, typer.Option(help="Data split and training seed (the paper uses 0-4).")]
Preset = Annotated[str, typer.Option(help="Hyperparameter preset: 'paper' (the public code's procedure and settings, a GPU job), 'cpu' (the CPU protocol: the fast networks, 4,000 classifier steps) or 'fast' (minutes: smoke tests and the demo).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
OutDir = Annotated[Optional[Path], typer.Option("--out", help="Run folder. [default: <checkpoints>/gen-<data>-spc<N>-seed<S>-<mask>[-<variant>...]-<preset> for fit-generator, <checkpoints>/clf-<data>-spc<N>-seed<S>-<method>[-<mask>...][-o<hash of its options>]-<preset> for fit-classifier; see checkpoints/README.md]")]
Checkpoints = Annotated[Path, typer.Option(help="Folder in which default run folders are made.")]
Resume = Annotated[bool, typer.Option(help="Continue an interrupted run in its folder.")]
Force = Annotated[bool, typer.Option(help="Overwrite a finished (or unfinished) run in the output folder.")]
Steps = Annotated[Optional[int], typer.Option(help="Total training steps. [default: preset's; paper: epochs x steps per epoch]")]
Epochs = Annotated[Optional[int], typer.Option(help=f"Epochs of max(500 // spc, 1) repeats of the subset, when --steps is not set. [default: {GeneratorConfig.epochs}]")]
BatchSize = Annotated[Optional[int], typer.Option(help="Batch size. [default: preset's and dataset's]")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars. [default: off]")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout instead of a table. [default: off]")]
LogEvery = Annotated[Optional[int], typer.Option(help=f"Fetch, check and log the losses every N steps. [default: {GeneratorConfig.log_every} generator, {ClassifierConfig.log_every} classifier]")]
CheckpointEvery = Annotated[Optional[int], typer.Option(help=f"Save a resumable checkpoint every N steps. [default: {default_text(GeneratorConfig, 'checkpoint_every')}]")]
CheckpointMinutes = Annotated[Optional[float], typer.Option(help=f"Also save a checkpoint when this many minutes passed since the last one (slow devices). [default: {default_text(GeneratorConfig, 'checkpoint_minutes')}]")]
DecoderResBlocks = Annotated[Optional[bool], typer.Option("--decoder-res-blocks/--no-decoder-res-blocks", help=f"Use the generator decoder's residual blocks (the paper's text) instead of dropping them as the public code does. [default: {default_text(GeneratorConfig, 'decoder_res_blocks')}]")]
SegMask = Annotated[Optional[str], typer.Option(help=f"Segment mask rule: 'range' (public code: a contiguous range of the partner's segment labels) or 'bernoulli' (paper text: each own segment with p 0.5). [default: {default_text(GeneratorConfig, 'seg_mask')}]")]
GridOffset = Annotated[Optional[str], typer.Option(help=f"Grid mask offset: 'batch' (public code: k x k cells stretched to size + size/k, one crop per batch) or 'sample' (cells of size/k, an offset per sample). [default: {default_text(GeneratorConfig, 'grid_offset')}]")]
MaskResize = Annotated[Optional[str], typer.Option(help=f"Pixel mask to feature size: 'nearest' (public code) or 'majority' (each cell goes with most of its pixels). [default: {default_text(GeneratorConfig, 'mask_resize')}]")]

# --out is a folder everywhere (a run folder, an export folder) or, on predict, the one file it names. Commands that
# write several tables take a file-name prefix, which is --out-prefix; their old spelling --out still works, unlisted.
OutPrefix = Annotated[Optional[Path], typer.Option("--out-prefix", help="File-name prefix of the written tables (not a folder): <prefix>.md, <prefix>.csv, a chart <prefix>.png and one self-contained page <prefix>.html (tables, chart, sample grids, per-class figures); experiment also <prefix>.json. E.g. results/cifair10-spc5. [default: print only]")]
OldOut = Annotated[Optional[Path], typer.Option("--out", hidden=True, help="The old spelling of --out-prefix.")]
# --out is the output folder's one name on every command; scripts written with the stages' old --out-dir still run
OldOutDir = Annotated[Optional[Path], typer.Option("--out-dir", help="The old spelling of --out, still accepted (use --out).")]


def _prefix(prefix: Optional[Path], old: Optional[Path]) -> Optional[Path]:
    if prefix is not None and old is not None and prefix != old:
        raise ChimeraMixError(f"--out-prefix {prefix} and --out {old} disagree: --out is the old spelling of --out-prefix, give one")
    return prefix if prefix is not None else old


Amp = Annotated[str, typer.Option(help="bf16 autocast: auto (on for CUDA), on or off.")]
ChannelsLast = Annotated[str, typer.Option(help="channels_last memory format: auto (on), on or off.")]
Fused = Annotated[str, typer.Option(help="Fused optimizer steps: auto (on), on or off.")]
Compile = Annotated[str, typer.Option(help="torch.compile the networks: off, on, or graphs (CUDA graphs, mode reduce-overhead).")]
Arch = Annotated[Optional[str], typer.Option(help="Classifier network: wrn16-8, wrn16-4, wrn16-2, resnet50 (from scratch: the paper's for 96x96), or an ImageNet backbone to fine-tune with --pretrained: resnet18, resnet50, efficientnet-lite0. [default: paper: wrn16-8 (32x32) / resnet50 (96x96); cpu and fast: wrn16-2]")]
Pretrained = Annotated[bool, typer.Option("--pretrained/--no-pretrained", help="Start the backbone (--arch resnet18, resnet50 or efficientnet-lite0) from ImageNet weights, with a new head for the data's classes; never downloads (torch's hub cache, the efficientnet-lite0 weights package, or --weights). [default: off]")]
Weights = Annotated[Optional[Path], typer.Option(help="The backbone's ImageNet weights file (a torchvision .pth, or efficientnet-lite0-57934424.pth). [default: torch's hub cache / the weights package]")]
InputSize = Annotated[Optional[int], typer.Option(help="Resolution an ImageNet backbone sees the batches at (resized inside the network, after every method; the generator keeps the data's). [default: 128]")]
BackboneLr = Annotated[Optional[float], typer.Option(help="Learning rate of a pretrained backbone (the new head trains at --lr). [default: 0.1 x --lr]")]


def _backbone(pretrained: bool, weights: Optional[Path], input_size: Optional[int], backbone_lr: Optional[float]) -> dict:
    return {"pretrained": pretrained, "weights": str(weights) if weights else None, "input_size": input_size,
            "backbone_lr": backbone_lr}


TensorBoard = Annotated[Optional[bool], typer.Option(
    "--tensorboard/--no-tensorboard",
    help="Write TensorBoard event files into each run folder (losses, learning rates, sample grids, test accuracy, "
         "config as hyperparameters); `tensorboard --logdir <checkpoints>` shows every run. Needs the tensorboard "
         "package: pip install 'chimeramix[tensorboard]'. [default: on when the package is installed]")]


def _tensorboard(flag: Optional[bool]) -> str:
    return {None: "auto", True: "on", False: "off"}[flag]


def _speed(amp, channels_last, fused, compile) -> dict:
    return {"amp": amp, "channels_last": channels_last, "fused": fused, "compile": compile}


def _progress(quiet: bool):
    from .progress import RichProgress

    return RichProgress(err, quiet=quiet)


@app.command()
@one_line_errors
def datasets(data_dir: DataDir = None):
    """List every data source: whether it is on this machine, where it is looked for, how to get it."""
    from chimeramix.data import describe_sources

    rows = describe_sources(data_dir)
    t = Table(title="data sources")
    for c in ("name", "kind", "here", "what"):
        t.add_column(c, overflow="fold")
    for r in rows:
        here = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[r["present"]]
        t.add_row(r["name"], r["kind"], here, r["about"])
    out.print(t)
    for r in rows:
        out.print(f"[bold]{r['name']}[/bold]: looks in {r['location']}; {r['how']}", highlight=False, soft_wrap=True)


# Options both stages take, declared once: (parameter, annotation, default). `stage_options` appends them to a stage
# command's signature and hands them to it as one dict; their defaults come from chimeramix/config.py.
STAGE_OPTIONS = (
    ("data", Data, DataOptions.data),
    ("spc", Spc, DataOptions.spc),
    ("seed", Seed, DataOptions.seed),
    ("preset", Preset, GeneratorConfig.preset),
    ("out_dir", OutDir, None),
    ("old_out_dir", OldOutDir, None),
    ("steps", Steps, None),
    ("epochs", Epochs, None),
    ("batch_size", BatchSize, None),
    ("data_dir", DataDir, None),
    ("image_size", ImageSize, None),
    ("device", Device, DataOptions.device),
    ("amp", Amp, DataOptions.amp),
    ("channels_last", ChannelsLast, DataOptions.channels_last),
    ("fused", Fused, DataOptions.fused),
    ("compile", Compile, DataOptions.compile),
    ("tensorboard", TensorBoard, None),
    ("log_every", LogEvery, None),
    ("checkpoint_every", CheckpointEvery, None),
    ("checkpoint_minutes", CheckpointMinutes, None),
    ("checkpoints", Checkpoints, Path("checkpoints")),
    ("resume", Resume, False),
    ("force", Force, False),
    ("quiet", Quiet, False),
    ("as_json", AsJson, False),
)
# what of them is not part of the config: how to run, not what to compute
RUN_CONTROLS = ("preset", "checkpoints", "resume", "force", "quiet", "as_json")


def stage_options(fn):
    """Give a stage command the STAGE_OPTIONS; it receives them as `common` (config fields) and `run` (RUN_CONTROLS)."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name not in ("common", "run")]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
              for name, annotation, default in STAGE_OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        given = {name: kwargs.pop(name) for name, _, _ in STAGE_OPTIONS if name in kwargs}
        run = {k: given.pop(k) for k in RUN_CONTROLS}
        out_dir, old, data_dir = given.pop("out_dir"), given.pop("old_out_dir"), given.pop("data_dir")
        if out_dir is not None and old is not None and out_dir != old:
            raise ChimeraMixError(f"--out {out_dir} and --out-dir {old} name two run folders: pass --out only")
        out_dir = out_dir if out_dir is not None else old
        common = {**given, "out": str(out_dir) if out_dir else None, "data_dir": str(data_dir) if data_dir else None,
                  "tensorboard": _tensorboard(given.pop("tensorboard"))}
        return fn(*args, common=common, run=run, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*own, *shared])
    return wrapper


def _default(cls, name: str) -> str:
    return f"[default: {default_text(cls, name)}]"


G, C = GeneratorConfig, ClassifierConfig


def _milestones_default() -> str:
    from chimeramix.config import GENERATOR_PRESETS, PRESETS

    text = lambda p: ",".join(f"{m:g}" for m in GENERATOR_PRESETS[p].get("lr_milestones", GeneratorConfig.lr_milestones))  # noqa: E731
    return f"[default: {', '.join(f'{p} {text(p)}' for p in PRESETS)}]"


@app.command("fit-generator")
@one_line_errors
@stage_options
def fit_generator_cmd(
    mask: Annotated[str, typer.Option(help="Mixing mask: 'grid' (random k x k cells) or 'seg' (Felzenszwalb segments).")] = G.mask,
    lr: Annotated[Optional[float], typer.Option(help=f"Adam learning rate of G and D. {_default(G, 'lr')}")] = None,
    w_rec: Annotated[Optional[float], typer.Option(help=f"Weight of the reconstruction loss, mse(rec1, x1) + mse(rec2, x2). {_default(G, 'w_rec')}")] = None,
    w_lap: Annotated[Optional[float], typer.Option(help=f"Weight of the Laplacian-pyramid L1 ({G.lap_levels} band-pass levels). {_default(G, 'w_lap')}")] = None,
    w_adv: Annotated[Optional[float], typer.Option(help=f"Weight of the LSGAN term. {_default(G, 'w_adv')}")] = None,
    ngf: Annotated[Optional[int], typer.Option(help=f"Generator base channels. {_default(G, 'ngf')}")] = None,
    ndf: Annotated[Optional[int], typer.Option(help=f"Discriminator base channels. {_default(G, 'ndf')}")] = None,
    work_size: Annotated[Optional[int], typer.Option(help="Resolution the generator works at. [default: paper: 2 x 32x32 data, else native]")] = None,
    decoder_res_blocks: DecoderResBlocks = None,
    seg_mask: SegMask = None,
    grid_offset: GridOffset = None,
    mask_resize: MaskResize = None,
    seg_input: Annotated[Optional[str], typer.Option(help=f"Felzenszwalb input: 'float' (the [-1, 1] image, public code) or 'uint8'. {_default(G, 'seg_input')}")] = None,
    d_step: Annotated[Optional[str], typer.Option(help=f"Discriminator step: 'fresh' (public code: a new composition after G's update, real = x1 or x2) or 'reuse' (G's composition, real = x1). {_default(G, 'd_step')}")] = None,
    grid_k: Annotated[Optional[int], typer.Option(help=f"Grid mask cells per side. {_default(G, 'grid_k')}")] = None,
    parents: Annotated[int, typer.Option(help="Images per composition, K distinct images of one class (2 to --spc): more than 2 mixes them by K-way masks, an extension beyond the paper.")] = G.parents,
    seg_scale: Annotated[Optional[float], typer.Option(help="Felzenszwalb scale. [default: 60 up to 64x64, else 400]")] = None,
    seg_min_size: Annotated[Optional[int], typer.Option(help="Felzenszwalb min_size. [default: 60 up to 64x64, else 400]")] = None,
    d_lr: Annotated[Optional[float], typer.Option(help="Adam learning rate of the discriminator. [default: the generator's --lr]")] = None,
    d_every: Annotated[Optional[int], typer.Option(help=f"Update the discriminator every N generator steps (N > 1 weakens it). {_default(G, 'd_every')}")] = None,
    warmup: Annotated[Optional[float], typer.Option(help=f"Linear learning-rate warm-up over this fraction of the steps. {_default(G, 'warmup')}")] = None,
    lr_milestones: Annotated[Optional[str], typer.Option(help=f"Learning-rate drops (x {G.lr_gamma:g} each) at these fractions of training, comma-separated. {_milestones_default()}")] = None,
    sample_every: Annotated[Optional[int], typer.Option(help="With --tensorboard: the sample grid of compositions every N steps. [default: ten over the run]")] = None,
    common: dict = None,
    run: dict = None,
):
    """Train the mixing generator (stage 1) on a per-class subset; writes generator.safetensors, samples.png, losses.png."""
    from chimeramix.config import make_config
    from chimeramix.train.generator import fit_generator

    cfg = make_config(
        GeneratorConfig, run["preset"], **common, mask=mask, lr=lr, w_rec=w_rec, w_lap=w_lap, w_adv=w_adv, ngf=ngf, ndf=ndf,
        work_size=work_size, decoder_res_blocks=decoder_res_blocks, seg_mask=seg_mask, grid_offset=grid_offset,
        mask_resize=mask_resize, seg_input=seg_input, d_step=d_step, grid_k=grid_k, parents=parents, seg_scale=seg_scale,
        seg_min_size=seg_min_size, d_lr=d_lr, d_every=d_every, warmup=warmup, lr_milestones=_fractions(lr_milestones),
        sample_every=sample_every,
    )
    with _progress(run["quiet"] or run["as_json"]) as p:
        r = fit_generator(cfg, resume=run["resume"], force=run["force"], progress=p, root=run["checkpoints"])
    summary = {"run": str(r.run_dir), "steps": r.steps, "losses": r.losses, "samples": str(r.samples),
               "already_finished": r.already_finished}
    if run["as_json"]:
        print(json.dumps(summary, indent=2))
        return
    if r.already_finished:
        out.print(f"[yellow]{escape(str(r.run_dir))} is already finished with this config; nothing to do (--force retrains)[/yellow]",
                  highlight=False, soft_wrap=True)
    _print_summary("generator run", [("steps", str(r.steps)), *((f"loss {k}", f"{v:.5g}") for k, v in r.losses.items())],
                   [("run", r.run_dir), ("samples", r.samples), ("weights", r.run_dir / "generator.safetensors")])


def _fractions(text: Optional[str]):
    """'0.3,0.6,0.8' -> (0.3, 0.6, 0.8); the config checks the values."""
    if text is None:
        return None
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ChimeraMixError(f"--lr-milestones must be comma-separated fractions such as 0.3,0.6,0.8 (got '{text}')") from None


def _print_summary(title: str, rows: list[tuple[str, str]], paths: list[tuple[str, Path]]) -> None:
    """A two-column table; the paths go in it when they fit the terminal, else below it on their own lines, never cut."""
    from rich.text import Text

    keys = [k for k, _ in rows + paths]
    width = max(len(k) for k in keys) + max([Text.from_markup(v).cell_len for _, v in rows] + [len(str(p)) for _, p in paths]) + 7
    inline = width <= out.width
    t = Table(title=title, show_header=False)
    t.add_column(no_wrap=True)
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    if inline:
        for k, p in paths:
            t.add_row(k, escape(str(p)))
    out.print(t)
    if not inline:
        for k, p in paths:
            out.print(f"{k}: {escape(str(p))}", highlight=False, soft_wrap=True)


def _parse_options(pairs: list[str]) -> dict:
    opts = {}
    for p in pairs or []:
        if "=" not in p:
            raise ChimeraMixError(f"--option takes KEY=VALUE (got '{p}'), e.g. --option alpha=0.4")
        k, v = p.split("=", 1)
        try:
            opts[k.strip().replace("-", "_")] = json.loads(v)
        except ValueError:
            opts[k.strip().replace("-", "_")] = v
    return opts


@app.command("fit-classifier")
@one_line_errors
@stage_options
def fit_classifier_cmd(
    generator: Annotated[Optional[Path], typer.Option(help="A finished fit-generator run folder: train with ChimeraMix compositions. [default: none]")] = None,
    method: Annotated[Optional[str], typer.Option(help="Training method (see `chimeramix methods`). [default: chimeramix with --generator, else none]")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="A method option KEY=VALUE, e.g. -o alpha=0.4 (repeatable). [default: none, the method's defaults in `chimeramix methods`]")] = None,
    mask: Annotated[Optional[str], typer.Option(help="Mask kind for compositions; must match the generator run's. [default: the generator run's]")] = None,
    seg_view: Annotated[str, typer.Option(help="What the classifier stage segments for seg masks: 'classifier' (its own images, as the public code) or 'generator' (as the generator run did).")] = C.seg_view,
    parents: Annotated[Optional[int], typer.Option(help="Images per composition; must match the generator run's. [default: the generator run's]")] = None,
    p_generated: Annotated[Optional[float], typer.Option(help=f"Probability that a batch is replaced by compositions (the method option p_generated; give it one way). [default: {P_GENERATED:g}]")] = None,
    arch: Arch = None,
    pretrained: Pretrained = False,
    weights: Weights = None,
    input_size: InputSize = None,
    backbone_lr: BackboneLr = None,
    lr: Annotated[Optional[float], typer.Option(help="SGD learning rate (cosine-annealed; a pretrained backbone's head). [default: paper 4.6e-3 (32x32) / 7.4e-3 (96x96); cpu and fast 0.05]")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="SGD weight decay. [default: paper 5.3e-3 (32x32) / 4.1e-4 (96x96)]")] = None,
    dropout: Annotated[float, typer.Option(help="Dropout inside the Wide ResNet blocks.")] = C.dropout,
    common: dict = None,
    run: dict = None,
):
    """Train a classifier (stage 2), with ChimeraMix or another method, and evaluate it once on the test set."""
    from chimeramix.config import make_config
    from chimeramix.train.classifier import fit_classifier

    cfg = make_config(
        ClassifierConfig, run["preset"], **common, generator=str(generator) if generator else None, method=method, mask=mask,
        seg_view=seg_view, parents=parents, p_generated=p_generated, arch=arch, lr=lr, weight_decay=weight_decay,
        dropout=dropout, method_options=_parse_options(option), **_backbone(pretrained, weights, input_size, backbone_lr),
    )
    with _progress(run["quiet"] or run["as_json"]) as p:
        r = fit_classifier(cfg, resume=run["resume"], force=run["force"], progress=p, root=run["checkpoints"])
    res = r.result
    if run["as_json"]:
        print(json.dumps({k: res[k] for k in ("label", "accuracy", "mean_class_accuracy", "test_size", "split")} | {"run": str(r.run_dir)}, indent=2))
        return
    if r.already_finished:
        out.print(f"[yellow]{escape(str(r.run_dir))} is already finished with this config; showing its result (--force retrains)[/yellow]",
                  highlight=False, soft_wrap=True)
    _print_summary(escape(f"{res['label']}  {Path(res['split']['source']).name}  spc {res['split']['spc']}  seed {res['split']['seed']}"),
                   [("top-1 accuracy", f"[bold]{100 * res['accuracy']:.2f}%[/bold]  ({res['test_size']} test images)"),
                    ("mean per-class accuracy", f"{100 * res['mean_class_accuracy']:.2f}%")],
                   [("run", r.run_dir), ("report", r.run_dir / "report.md")])


@app.command()
@one_line_errors
def report(
    runs: Annotated[Optional[list[Path]], typer.Argument(
        help="Classifier run folders (e.g. checkpoints/clf-*), or recorded results: the .json that experiment "
             "--out-prefix or report --json wrote (e.g. results/cpu-bf16-cifar10-spc10-envelope.json).")] = None,
    out_stem: OutPrefix = None,
    old_out: OldOut = None,
    title: Annotated[str, typer.Option(help="Table title. [default: each table's setting]")] = "",
    as_json: AsJson = False,
):
    """Mean +- std test accuracy over seeds per method, and each method's paired difference to the baseline.

    Runs that differ in anything but method and seed (data, spc, preset, steps, ...) go in separate tables.
    """
    from chimeramix.html_report import write_html
    from chimeramix.report import load_tables, write_tables

    out_stem = _prefix(out_stem, old_out)
    tables = load_tables(runs or [])
    if out_stem:  # first: an unwritable --out fails before anything is printed
        md, cs, charts = write_tables(tables, out_stem, title)
        page = write_html(tables, out_stem, title, charts)
    if as_json:
        print(json.dumps([{"setting": t.name, **r.to_dict()} for t in tables for r in t.rows], indent=2))
    else:
        if title and len(tables) > 1:
            out.print(f"[bold]{escape(title)}[/bold]")
        for t in tables:
            _print_table(t, title if len(tables) == 1 else "")
    if out_stem and not as_json:
        out.print(escape(f"wrote {md}, {cs}, {page} and {', '.join(map(str, charts))}"), highlight=False, soft_wrap=True)


def _print_table(table, title: str = "") -> None:
    from chimeramix.report import table_cells

    head, cells = table_cells(table.rows)
    n_seeds = sum(h.startswith("seed ") for h in head)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)] if cells else [len(h) for h in head]
    dropped = False
    if n_seeds and sum(widths) + 3 * len(widths) + 1 > out.width:
        # columns folded to a letter each are unreadable: on a narrow terminal the per-seed columns go (the .md
        # that --out-prefix writes and --json keep them) and the summary columns stay whole
        head, cells, widths = head[:-n_seeds], [c[:-n_seeds] for c in cells], widths[:-n_seeds]
        dropped = True
    t = Table(title=escape(title or f"{table.name} (test accuracy %)"))
    # the number columns stay whole; a long method name wraps at its spaces instead
    t.add_column(head[0])
    for h, w in zip(head[1:], widths[1:]):
        t.add_column(h, justify="right", no_wrap=True, min_width=min(w, 24))
    for c in ([escape(x) for x in line] for line in cells):  # "[n/a]" would read as rich markup
        t.add_row(c[0], f"[bold]{c[1]}[/bold]", *c[2:])
    out.print(t)
    if dropped:
        out.print(f"({n_seeds} per-seed columns left out to fit {out.width} columns: widen the terminal, or see "
                  "--out-prefix's .md or --json)", highlight=False, soft_wrap=True)
    if any(r.vs_baseline is not None for r in table.rows):
        out.print("Δ: method minus Baseline (points) over the seeds both ran, 95% CI from the paired t; * the CI excludes 0")


@app.command()
@one_line_errors
def experiment(
    data: Data = "digits",
    spc: Spc = 5,
    seeds: Annotated[str, typer.Option(help="Seeds (data splits): a range 0-4 or a list 0,1,2.")] = "0-4",
    preset: Preset = TABLE_PRESET,
    mask: Annotated[str, typer.Option(help="Generator mask kind: seg, grid or both.")] = "seg",
    methods: Annotated[str, typer.Option(help="Comma-separated methods (see `chimeramix methods`), or 'all'.")] = "none,chimeramix",
    out_stem: OutPrefix = None,
    old_out: OldOut = None,
    gen_steps: Annotated[Optional[int], typer.Option(help="Override the generator's total steps. [default: preset's]")] = None,
    clf_steps: Annotated[Optional[int], typer.Option(help="Override the classifier's total steps. [default: preset's]")] = None,
    jobs: Annotated[int, typer.Option(help="Seeds trained concurrently in separate processes (submitit-local: jobs at once).")] = 1,
    launcher: launch_options.Launcher = "local",
    slurm_partition: launch_options.SlurmPartition = None,
    slurm_gpus_per_job: launch_options.SlurmGpus = 1,
    slurm_cpus_per_job: launch_options.SlurmCpus = 4,
    slurm_mem: launch_options.SlurmMem = "16G",
    slurm_time: launch_options.SlurmTime = "12:00:00",
    slurm_array_parallelism: launch_options.SlurmParallel = 0,
    wait: launch_options.Wait = True,
    decoder_res_blocks: DecoderResBlocks = None,
    seg_mask: SegMask = None,
    grid_offset: GridOffset = None,
    parents: Annotated[int, typer.Option(help="Images per composition of the generators (2 to --spc; more than 2 is an extension beyond the paper).")] = GeneratorConfig.parents,
    title: Annotated[str, typer.Option(help="Table title. [default: data, spc and preset]")] = "",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    device: Device = "auto",
    amp: Amp = "auto",
    channels_last: ChannelsLast = "auto",
    fused: Fused = "auto",
    compile: Compile = "off",
    tensorboard: TensorBoard = None,
    arch: Arch = None,
    pretrained: Pretrained = False,
    weights: Weights = None,
    input_size: InputSize = None,
    backbone_lr: BackboneLr = None,
    checkpoints: Checkpoints = Path("checkpoints"),
    force: Annotated[bool, typer.Option(help="Retrain runs that already finished.")] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
):
    """The paper's protocol: for each seed fit the generator(s) and every classifier, then print mean +- std per method.

    Finished runs with the same config are reused, so an interrupted experiment picks up where it stopped.
    """
    from chimeramix.experiment import parse_seeds, run_experiment

    out_stem = _prefix(out_stem, old_out)
    masks = {"both": ["grid", "seg"], "seg": ["seg"], "grid": ["grid"]}.get(mask)
    if masks is None:
        raise ChimeraMixError(f"unknown --mask '{mask}': choose seg, grid or both")
    common = {"data_dir": str(data_dir) if data_dir else None, "image_size": image_size, **_speed(amp, channels_last, fused, compile),
              "tensorboard": _tensorboard(tensorboard)}
    with _progress(quiet or as_json) as p:
        res = run_experiment(
            data, spc, parse_seeds(seeds), preset=preset, masks=masks, methods=methods, device=device, out=out_stem,
            root=checkpoints, gen_options={**common, "steps": gen_steps, "decoder_res_blocks": decoder_res_blocks,
                                                  "seg_mask": seg_mask, "grid_offset": grid_offset, "parents": parents},
            clf_options={**common, "steps": clf_steps, "arch": arch, **_backbone(pretrained, weights, input_size, backbone_lr)},
            jobs=jobs, force=force, progress=p, title=title, launcher=launcher, wait_for_jobs=wait, job_progress=launch_options.job_progress,
            slurm=launch_options.slurm_options(slurm_partition, slurm_gpus_per_job, slurm_cpus_per_job, slurm_mem, slurm_time, slurm_array_parallelism),
        )
    if as_json:
        files = {"md": res.table_md, "csv": res.table_csv, "json": res.summary_json, "html": res.table_html, "charts": res.charts}
        print(json.dumps({
            "table": [{"setting": t.name, **r.to_dict()} for t in res.tables for r in t.rows],
            "classifier_runs": [r.get("run_dir") for r in res.results], "generator_runs": res.generator_runs,
            "pending": res.pending, "submitted": res.submitted,
            "seconds": res.seconds, "wrote": {k: (None if v is None else [str(x) for x in v] if isinstance(v, list) else str(v))
                                              for k, v in files.items()},
        }, indent=2, ensure_ascii=False))
        return
    if res.pending:
        return launch_options.submitted_note(out, res.pending, res.submitted)
    for t in res.tables:
        _print_table(t, (title or f"{data}: {spc} per class, preset {preset} (test accuracy %)") if len(res.tables) == 1 else "")
    s = res.seconds
    parts = f" (generators {s['generator']:.0f} s, classifiers {s['classifier']:.0f} s, summed over runs)" if "generator" in s else ""
    out.print(f"wall time {s['wall']:.0f} s{parts}")
    if res.generator_runs:
        out.print(escape(f"sample grid: {Path(res.generator_runs[0]) / 'samples.png'}"), highlight=False, soft_wrap=True)
    if res.table_md:
        out.print(escape(f"wrote {res.table_md}, {res.table_csv}, {res.summary_json}, {res.table_html} and "
                         f"{', '.join(map(str, res.charts))}"),
                  highlight=False, soft_wrap=True)


@app.command("export")
@one_line_errors
def export_cmd(
    generator: Annotated[Path, typer.Option(help="A finished fit-generator run folder; its own training subset, split and mask rules are used.")],
    per_class: Annotated[int, typer.Option(help="Compositions written per class (at least 1).")],
    out_dir: Annotated[Path, typer.Option("--out", help="The export folder: train/<class>/, test/<class>/, manifest.json, samples.png.")],
    with_real: Annotated[bool, typer.Option("--with-real", help="Also write the subset's real images (train/<class>/real_<index>.png). [default: off]")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the parents' and masks' draws. [default: the generator run's seed]")] = None,
    seg_view: Annotated[str, typer.Option(help="What seg masks segment: 'classifier' (each image at its own size, as fit-classifier's default) or 'generator' (as the generator run did).")] = ClassifierConfig.seg_view,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where a named dataset is read from. [default: the generator run's --data-dir, else $CHIMERAMIX_DATA or ~/.cache/chimeramix]")] = None,
    device: Device = "auto",
    force: Annotated[bool, typer.Option(help="Replace a finished export in --out.")] = False,
    quiet: Quiet = False,
):
    """Write N generated compositions per class (plus the source's test set) as an image folder with a manifest.

    `chimeramix fit-classifier --data <out>` then trains on it and evaluates on the source's test set.
    The same command on the same device writes byte-identical PNGs.
    """
    from chimeramix.export import export_dataset

    with _progress(quiet) as p:
        r = export_dataset(generator, out_dir, per_class, with_real=with_real, seed=seed, seg_view=seg_view, device=device,
                           data_dir=data_dir, force=force, progress=p)
    if r.already_finished:
        note_reused(out, r.out)
    t = summary_table(f"export {r.out}")
    t.add_row("generated", f"{r.generated} ({per_class} per class)")
    t.add_row("real", str(r.real))
    t.add_row("test", str(r.test))
    t.add_row("manifest", str(r.manifest))
    t.add_row("samples", str(r.samples))
    out.print(t)


@app.command("fid")
@one_line_errors
def fid_cmd(
    image_set: Annotated[str, typer.Argument(metavar="SET", help="The images to measure: a folder (every png/jpg/jpeg/bmp/webp under it, recursively, e.g. an export's train/) or SOURCE:SPLIT with SPLIT train or test (cifar10:train, digits:test, DIR:train for a folder with train/ and test/).")],
    reference: Annotated[str, typer.Argument(metavar="REFERENCE", help="The images to compare with, written as SET.")],
    features: Annotated[str, typer.Option(help="inception (FID: Inception-v3 pool3, 2048-d) or classifier:RUN (the Fréchet distance in the penultimate features of a finished fit-classifier run; works offline).")] = "inception",
    weights: Annotated[Optional[Path], typer.Option(help="torchvision's Inception-v3 state_dict (inception_v3_google-0cc3c7bd.pth from download.pytorch.org). [default: torch's hub cache, <torch hub dir>/checkpoints/inception_v3_google-*.pth]")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 50,
    data_dir: DataDir = None,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: AsJson = False,
):
    """Fréchet distance between two image sets: FID in Inception-v3 features, or the same distance in a classifier's features.

    Images are resized to 299 x 299 as clean-fid does (antialiased bicubic). The weights are torchvision's,
    so an FID here is comparable with other FIDs from this command, not with published TF-Inception numbers.
    """
    from chimeramix.fid import compare_image_sets

    with _progress(quiet or as_json) as p:
        r = compare_image_sets(image_set, reference, features=features, weights=weights, batch_size=batch_size,
                               device=device, data_dir=data_dir, progress=p)
    if as_json:
        print(json.dumps(r.to_dict(), indent=2, ensure_ascii=False))
        return
    t = summary_table(r.metric)
    t.add_row(r.metric, f"[bold]{r.distance:.4f}[/bold]")
    t.add_row("features", escape(f"{r.features} ({r.feature_dim}-d)"))
    t.add_row("set", escape(f"{r.set} ({r.set_size} images)"))
    t.add_row("reference", escape(f"{r.reference} ({r.reference_size} images)"))
    out.print(t)
    for w in r.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False, soft_wrap=True)


# A table of thousands of rows helps no one on a terminal; the CSV (--out) or --json has them all.
PREDICT_ROWS_SHOWN = 200


@app.command("predict")
@one_line_errors
def predict_cmd(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A finished fit-classifier run folder (e.g. checkpoints/clf-...).")],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGES_OR_FOLDER...", help="Image files, or folders whose images (png/jpg/jpeg/bmp/webp, recursively) are classified.")],
    out_csv: Annotated[Optional[Path], typer.Option("--out", help="Also write the predictions to this CSV file (path, label, probability, label_2, probability_2, ...). [default: none, only the table]")] = None,
    top_k: Annotated[int, typer.Option(help="Labels shown per image, most probable first.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 100,
    device: Device = "auto",
    cam: Annotated[Optional[Path], typer.Option(help="Also write, per image, DIR/<n>-<name>.png: the image under the class activation map of its predicted class, and of its true class when it sits in a folder named for one of the run's classes. [default: none]")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out file; write into a --cam folder that holds files.")] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
):
    """Labels and probabilities for new images from a trained classifier run.

    Images are resized to the run's training size as its data was and normalised as in training.
    """
    from chimeramix.predict import predict_images

    with _progress(quiet or as_json) as p:
        r = predict_images(run, images, top_k=top_k, batch_size=batch_size, device=device, out=out_csv, force=force, progress=p,
                           cam=cam)
    if as_json:
        print(json.dumps(r.to_dict(), indent=2, ensure_ascii=False))
        return
    t = Table(title=f"predictions ({len(r.predictions)} images)")
    t.add_column("image", overflow="fold")  # paths stay whole on a narrow terminal
    for k in range(1, r.top_k + 1):
        t.add_column("label" if k == 1 else f"#{k}", overflow="fold")
    shown = r.predictions if r.csv is None else r.predictions[:PREDICT_ROWS_SHOWN]
    for pr in shown:
        t.add_row(escape(pr.path), *(escape(f"{lb} ({100 * pb:.1f}%)") for lb, pb in zip(pr.labels, pr.probabilities)))
    out.print(t)
    if len(shown) < len(r.predictions):
        out.print(f"{len(r.predictions) - len(shown)} more rows in the CSV", highlight=False)
    if r.csv:
        out.print(escape(f"wrote {r.csv}"), highlight=False, soft_wrap=True)
    if r.cam:
        out.print(escape(f"class activation maps in {r.cam}/"), highlight=False, soft_wrap=True)


@app.command("methods")
@one_line_errors
def methods_cmd():
    """List every training method with its defaults and its source paper."""
    from .methods import methods as show

    show()


from .curate import curate_cmd  # noqa: E402  (its own file; wrapped here so it shares the error handling)

app.command("curate")(one_line_errors(curate_cmd))

from .sweep import register as _register_sweep  # noqa: E402  (it needs one_line_errors and _progress from above)

_register_sweep(app, one_line_errors=one_line_errors, progress=_progress, console=out)


def main():
    app()


if __name__ == "__main__":
    main()
