"""The ImageNet runner: one pruning run of any registered method on a torchvision model, with
torchrun + DistributedDataParallel.

    torchrun --nproc-per-node N -m pruners.imagenet --data DIR --arch resnet50 --method lrr \\
        --target-density 0.1 [--preset lrr-0.8] [method flags] [--epochs ...] [--resume]

(``cubist imagenet`` checks the input, then launches exactly this). One run, through the
registry and the procedures unchanged: the model's Linear / Conv2d layers are made maskable
(:func:`pruners.layers.prunable_layers`), a :class:`~pruners.base.PruneContext` holds a
:class:`~pruners.trainer_loader.LoaderTrainer` and ``run_method`` does the rest; the target is
``round(target_density * N)`` weights (N: every prunable weight), reached exactly.

- Data: an ``ImageFolder`` directory with ``train/`` and ``val/`` (class folders of images);
  training transform RandomResizedCrop(``image_size``) + horizontal flip (``--augment
  standard``) or resize + centre crop (``none``: small images such as the digits), evaluation
  resize to ``image_size / 0.875`` then centre crop ``image_size``; ImageNet mean and std.
- Evaluation is exact: process ``r`` of ``W`` evaluates images ``r, r + W, ...`` of ``val/``, and
  the correct counts are summed, so every image counts once whatever ``W``.
- Rows (kind ``imagenet``, one per evaluation: after every ``eval_every``-th epoch and once at
  the end, the final pruned model) go to the result store (``--out``), written by rank 0 only:
  top-1 (``heldout_acc``), top-5, density, effective density (:mod:`pruners.connectivity_conv`),
  dead channels per layer, training images per second, wall time, and the checkpoint the row's
  weights live in (rows hold no weights).
- Checkpoints: every epoch rank 0 writes ``<checkpoint dir>/last.pt`` atomically (model with its
  masks, optimiser, scaler, trainer counters and snapshots, method state, context, sampler epoch,
  RNG states; ``--keep-checkpoints``: also ``epoch-XXXX.pt``), and ``final.pt`` at the end.
  ``--resume`` replays the procedure up to the checkpoint without training
  (:class:`~pruners.trainer_loader.Replay`) and continues: bit for bit on CPU. A checkpoint of
  another configuration is refused.

Presets (:data:`PRESETS`) are the papers' ImageNet recipes; the README lists them with sources.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from cubist.store import ResultStore, make_row, run_id, write_atomically

from .base import PruneContext, get_method, load_methods
from .connectivity_conv import connectivity_counts
from .layers import prunable_layers
from .procedures import run_method
from .trainer_loader import (SCHEDULES, Dist, LoaderTrainer, Recipe, Replay, context_state, guard_method,
                             init_dist, method_state)

AUGMENTS = ("standard", "none")
AMPS = ("auto", "bf16", "fp16", "none")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
KILL_ENV = "CUBIST_IMAGENET_KILL_AT_STEP"   # tests: SIGKILL every process after that optimiser step


@dataclass(frozen=True)
class ImageNetConfig:
    """One pruning run on an ImageFolder data set. The fields marked ``how`` say how, not what,
    is run: they stay out of the run's identity (its rows' ids and the resume check)."""

    data: str = field(default="", metadata={"help": "ImageFolder directory with train/ and val/", "cli": False})
    arch: str = field(default="resnet50", metadata={"help": "a torchvision.models name, or " + ", ".join(
        ("small_cnn",))})
    method: str = field(default="lrr", metadata={"help": "pruning method of the registry", "cli": False})
    target_density: float = field(default=0.1, metadata={"help": "weights kept, a fraction in (0, 1]"})
    epochs: int = field(default=90, metadata={"help": "epochs of every training run of the procedure"})
    batch_size: int = field(default=256, metadata={"help": "global batch (split over the processes)"})
    lr: float = field(default=0.1, metadata={"help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    wd: float = field(default=1e-4, metadata={"help": "weight decay"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum"})
    schedule: str = field(default="step", metadata={"help": "learning-rate schedule", "choices": SCHEDULES})
    milestones: tuple = field(default=(30, 60, 80), metadata={"help": "epochs of x0.1 for --schedule step",
                                                              "item": int})
    warmup: float = field(default=0.0, metadata={"help": "epochs of linear warm-up"})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the loss"})
    image_size: int = field(default=224, metadata={"help": "crop size (training and evaluation)"})
    augment: str = field(default="standard", metadata={
        "help": "standard: RandomResizedCrop + flip; none: resize + centre crop for training too",
        "choices": AUGMENTS})
    amp: str = field(default="auto", metadata={"help": "autocast on CUDA (auto: bf16); CPU: none", "choices": AMPS})
    channels_last: bool = field(default=True, metadata={"help": "channels-last memory format on CUDA"})
    seed: int = field(default=0, metadata={"help": "seed of the init, the data order and the method's draws"})
    rewind_epoch: float = field(default=-1.0, metadata={
        "help": "for rewind=step: rewind to this epoch (sets --rewind-step to epoch x steps per epoch; -1: off)"})
    score_pool: int = field(default=512, metadata={"help": "training images held for scoring batches"})
    preset: str = field(default="", metadata={"help": "a paper's recipe (see the README)", "cli": False})
    method_params: dict = field(default_factory=dict, metadata={"cli": False, "help": "method hyper-parameters"})
    # how
    workers: int = field(default=8, metadata={"help": "DataLoader workers per process", "how": True})
    eval_every: int = field(default=1, metadata={"help": "evaluate (one row) every K epochs", "how": True})
    out: str = field(default=os.path.join("results", "imagenet"), metadata={
        "help": "result store directory", "how": True})
    checkpoint_dir: str = field(default="", metadata={
        "help": "checkpoint directory (default OUT/checkpoints/RUN)", "how": True})
    keep_checkpoints: bool = field(default=False, metadata={"help": "keep every epoch's checkpoint", "how": True})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda", "how": True,
                                                  "choices": ("auto", "cpu", "cuda")})

    def __post_init__(self):
        load_methods()
        get_method(self.method)  # unknown method: ValueError
        if not (0 < self.target_density <= 1) or not math.isfinite(self.target_density):
            raise ValueError(f"--target-density {self.target_density:g} is not in (0, 1]")
        for name in ("epochs", "batch_size", "image_size", "score_pool", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.wd < 0 or not 0 <= self.momentum < 1 or self.warmup < 0 or self.workers < 0:
            raise ValueError("need --lr > 0, --wd >= 0, --momentum in [0, 1), --warmup >= 0, --workers >= 0")
        if self.schedule not in SCHEDULES or self.augment not in AUGMENTS or self.amp not in AMPS:
            raise ValueError("unknown --schedule, --augment or --amp")
        check_arch(self.arch)
        self.method_config()  # validates the method's parameters

    def method_config(self, steps_per_epoch: int | None = None):
        cls = get_method(self.method)
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = set(self.method_params) - known
        if unknown:
            raise ValueError(f"method {self.method} has no parameter(s) {', '.join(sorted(unknown))}")
        params = dict(self.method_params)
        if self.rewind_epoch >= 0:
            if "rewind_step" not in known:
                raise ValueError(f"--rewind-epoch applies to methods with rewinding, not {self.method}")
            params["rewind"] = "step"
            params["rewind_step"] = round(self.rewind_epoch * (steps_per_epoch or 1))
        return cls.Config(**params)

    def identity(self, world: int) -> dict:
        """What the run is (hashed into its rows' ids and checked on resume)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.metadata.get("how")}
        d.pop("data")
        d["milestones"] = list(self.milestones)
        d["world_size"] = int(world)
        return d


def check_arch(arch: str) -> None:
    if arch in LOCAL_ARCHS:
        return
    import torchvision
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown architecture {arch!r}: not a torchvision.models classification model "
                         f"nor one of {', '.join(LOCAL_ARCHS)}")


def small_cnn(num_classes: int) -> nn.Module:
    """A small CNN for small images (the digits): 3 conv-BN-ReLU layers, global average pool, fc."""
    def block(a, b, stride):
        return [nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(3, 32, 1), *block(32, 64, 2), *block(64, 128, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


LOCAL_ARCHS = {"small_cnn": small_cnn}


def build_model(arch: str, num_classes: int, seed: int) -> nn.Module:
    """``arch`` with ``num_classes`` outputs, initialised from ``seed`` (the same on every process)."""
    torch.manual_seed(seed)
    if arch in LOCAL_ARCHS:
        return LOCAL_ARCHS[arch](num_classes)
    import torchvision
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


# -- presets: the papers' ImageNet recipes ---------------------------------------------------
# Each: config fields and method parameters, and where they come from. Values marked uncertain
# are our reading of the paper; the README repeats the table.
_STANDARD_90 = dict(epochs=90, batch_size=1024, lr=0.4, warmup=5, schedule="step", milestones=(30, 60, 80),
                    momentum=0.9, wd=1e-4)
PRESETS: dict[str, dict] = {
    "imp-wr": dict(method="imp", config=dict(_STANDARD_90, rewind_epoch=6), params=dict(rate=0.2),
                   source="Frankle, Dziugaite, Roy & Carbin, ICML 2020 (Linear Mode Connectivity and the LTH), "
                          "ResNet-50: 90 epochs, batch 1024, lr 0.4, 5 warm-up epochs, x0.1 at 30/60/80, "
                          "rewind to epoch 6 (uncertain: their rewinding epoch for ResNet-50 ranged 4-6)"),
    "lrr-0.8": dict(method="lrr", config=dict(_STANDARD_90), params=dict(rate=0.2),
                    source="Renda, Frankle & Carbin, ICLR 2020: ResNet-50 with the reference 90-epoch schedule "
                           "(batch 1024, lr 0.4, warm-up 5, x0.1 at 30/60/80), keep 0.8 of the weights per cycle"),
    "lrr-oneshot": dict(method="lrr", config=dict(_STANDARD_90), params=dict(cycles=1),
                        source="Renda, Frankle & Carbin, ICLR 2020: one-shot LRR (train, prune to the target, "
                               "retrain with the full schedule)"),
    "gmp": dict(method="gmp", config=dict(_STANDARD_90, epochs=100), params=dict(prune_steps=100, start_frac=0.1,
                                                                                   end_frac=0.5),
                source="Zhu & Gupta 2017; Gale, Elsen & Hooker 2019 (The State of Sparsity), ResNet-50: pruning "
                       "from ~10% to ~50% of training, cubic schedule (uncertain: their exact start/end steps)"),
    "rigl": dict(method="rigl", config=dict(epochs=100, batch_size=4096, lr=1.6, warmup=5, schedule="step",
                                            milestones=(30, 70, 90), label_smoothing=0.1, wd=1e-4),
                 params=dict(update_every=100, drop_fraction=0.3, end_fraction=0.75, density_scheme="erk"),
                 source="Evci, Gale, Menick, Castro & Elsen, ICML 2020, ResNet-50 (1x): 100 epochs, batch 4096, "
                        "lr 1.6, 5 warm-up epochs, x0.1 at 30/70/90, label smoothing 0.1, ERK, dT 100, alpha 0.3, "
                        "T_end 75%"),
    "str": dict(method="str", config=dict(epochs=100, batch_size=256, lr=0.256, warmup=5, schedule="cosine",
                                          label_smoothing=0.1, wd=3.0517578125e-05, nesterov=True),
                params=dict(),
                source="Kusupati et al., ICML 2020 (STR), ResNet-50: 100 epochs, batch 256, lr 0.256 cosine, "
                       "5 warm-up epochs, label smoothing 0.1, wd 3.05e-5, Nesterov; s_init and the sparsity "
                       "come from --str-init (their per-target tables)"),
    "pilot-oneshot": dict(method="pilot", config=dict(_STANDARD_90), params=dict(pilot_k_abs=8000.0, delta=1.01),
                          source="Jacobs & Burkholz, ICLR 2025 (Mask in the Mirror), ResNet-50: PILoT training, "
                                 "then one magnitude prune to the target, no fine-tuning; K = 8000 (the paper's "
                                 "ResNet budget); schedule: the standard 90 epochs (uncertain)"),
    "snip": dict(method="snip", config=dict(_STANDARD_90), params=dict(),
                 source="Lee, Ajanthan & Torr, ICLR 2019 as trained by the PaI baselines (Frankle et al., ICLR "
                        "2021 'Pruning neural networks at initialization: why are we missing the mark'): prune "
                        "at init, then the standard 90 epochs"),
    "grasp": dict(method="grasp", config=dict(_STANDARD_90), params=dict(),
                  source="Wang, Zhang & Grosse, ICLR 2020; training as for snip"),
    "synflow": dict(method="synflow", config=dict(_STANDARD_90), params=dict(rounds=100),
                    source="Tanaka et al., NeurIPS 2020: 100 rounds at init; training as for snip"),
    "random-erk": dict(method="random", config=dict(_STANDARD_90), params=dict(density_scheme="erk"),
                       source="Gadhikar, Mukherjee & Burkholz, ICML 2023: random ERK masks, the standard schedule"),
}


def apply_preset(name: str, given: dict, given_params: dict) -> tuple[dict, dict]:
    """Config fields and method parameters of preset ``name`` under those given explicitly."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
    p = PRESETS[name]
    method = given.get("method") or p["method"]
    if method != p["method"]:
        raise ValueError(f"preset {name} is for method {p['method']}, not {method}")
    known = {f.name for f in dataclasses.fields(get_method(method).Config)}
    params = {k: v for k, v in p["params"].items() if k in known}
    return {**p["config"], "method": method, **given, "preset": name}, {**params, **given_params}


# -- data ------------------------------------------------------------------------------------
def check_image_folder(root: str) -> tuple[list[str], dict]:
    """The classes of ``root/train`` and ``root/val`` (the same set), or a ``ValueError`` saying
    what is wrong in one line."""
    if not root:
        raise ValueError("--data DIR is required")
    if not os.path.isdir(root):
        raise ValueError(f"--data {root}: no such directory")
    found = {}
    for split in ("train", "val"):
        d = os.path.join(root, split)
        if not os.path.isdir(d):
            raise ValueError(f"--data {root}: no {split}/ directory (expected the ImageFolder layout "
                             f"{root}/train/CLASS/IMAGE and {root}/val/CLASS/IMAGE)")
        classes = sorted(e.name for e in os.scandir(d) if e.is_dir())
        if not classes:
            raise ValueError(f"--data {root}: {split}/ holds no class directories")
        found[split] = classes
    if found["train"] != found["val"]:
        extra = sorted(set(found["train"]) ^ set(found["val"]))[:3]
        raise ValueError(f"--data {root}: train/ and val/ have different classes (e.g. {', '.join(extra)})")
    return found["train"], found


def image_datasets(cfg: ImageNetConfig):
    """``(train, val, pool_dataset, dataset_id)``: ImageFolder data sets with the standard transforms."""
    from torchvision import datasets, transforms
    check_image_folder(cfg.data)
    s = cfg.image_size
    norm = transforms.Normalize(MEAN, STD)
    evaluate = transforms.Compose([transforms.Resize(round(s / 0.875)), transforms.CenterCrop(s),
                                   transforms.ToTensor(), norm])
    if cfg.augment == "standard":
        train_t = transforms.Compose([transforms.RandomResizedCrop(s), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor(), norm])
    else:
        train_t = evaluate
    try:
        train = datasets.ImageFolder(os.path.join(cfg.data, "train"), train_t)
        val = datasets.ImageFolder(os.path.join(cfg.data, "val"), evaluate)
        pool = datasets.ImageFolder(os.path.join(cfg.data, "train"), evaluate)
    except (FileNotFoundError, RuntimeError) as e:
        raise ValueError(f"--data {cfg.data}: {str(e).splitlines()[0]}") from None
    h = hashlib.sha256()
    for ds, split in ((train, "train"), (val, "val")):
        h.update(json.dumps([split, ds.classes]).encode())
        for path, target in ds.samples:
            h.update(f"{os.path.relpath(path, cfg.data)}\t{target}\n".encode())
    return train, val, pool, h.hexdigest()[:16]


def _pool_loader(pool_ds, size: int, seed: int):
    def load():
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(pool_ds), generator=g)[:size].tolist()
        xs, ys = zip(*(pool_ds[i] for i in idx))
        return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)
    return load


@torch.no_grad()
def evaluate(model: nn.Module, val_ds, dist: Dist, *, batch_size: int, workers: int, amp_dtype=None,
             channels_last: bool = False) -> dict:
    """Exact top-1 / top-5 / loss over ``val_ds``: process ``r`` takes images ``r, r + W, ...``."""
    from torch.utils.data import DataLoader, Subset
    mine = Subset(val_ds, range(dist.rank, len(val_ds), dist.world))
    loader = DataLoader(mine, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dist.device.type == "cuda")
    was = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=dist.device)  # top1, top5, loss, count
    try:
        for x, y in loader:
            x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dist.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(x)
            out = out.float()
            k = min(5, out.shape[-1])
            top = out.topk(k, -1).indices
            sums[0] += (top[:, 0] == y).sum()
            sums[1] += (top == y[:, None]).any(-1).sum()
            sums[2] += nn.functional.cross_entropy(out, y, reduction="sum")
            sums[3] += len(y)
    finally:
        model.train(was)
    tot = dist.all_sum(sums)
    n = int(tot[3])
    if n != len(val_ds):
        raise AssertionError(f"evaluated {n} images of {len(val_ds)}")
    return {"top1": float(tot[0]) / n, "top5": float(tot[1]) / n, "val_loss": float(tot[2]) / n, "images": n}


# -- the run -----------------------------------------------------------------------------------
def checkpoint_dir(cfg: ImageNetConfig, key: str) -> str:
    return cfg.checkpoint_dir or os.path.join(cfg.out, "checkpoints", key)


def _say(dist: Dist, quiet: bool, text: str) -> None:
    if dist.main and not quiet:
        print(text, file=sys.stderr, flush=True)


def run(cfg: ImageNetConfig, *, resume: bool = False, quiet: bool = False, dist: Dist | None = None) -> list[dict]:
    """Run (or resume) ``cfg`` in this process (one of ``dist.world``); returns the rows written
    by this run (rank 0; other ranks return the same rows without writing them)."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    dist = dist or init_dist(cfg.device)
    t_start = time.time()
    if cfg.batch_size % dist.world:
        raise ValueError(f"--batch-size {cfg.batch_size} is not a multiple of the {dist.world} processes")
    train_ds, val_ds, pool_ds, data_id = image_datasets(cfg)
    per_rank = cfg.batch_size // dist.world
    cuda = dist.device.type == "cuda"
    sampler = DistributedSampler(train_ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=cfg.workers, pin_memory=cuda,
                        drop_last=True, persistent_workers=False, generator=torch.Generator(),
                        prefetch_factor=4 if cfg.workers else None)
    if len(loader) < 1:
        raise ValueError(f"--data {cfg.data}: {len(train_ds)} training images give no batch of {per_rank} "
                         f"per process")
    identity = cfg.identity(dist.world)
    ident = {"kind": "imagenet", "method": cfg.method, "init": "random", "init_seed": cfg.seed,
             "lr": cfg.lr, "schedule": cfg.schedule, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
             "momentum": cfg.momentum, "weight_decay": cfg.wd, "seed": cfg.seed, "dataset_id": data_id,
             "data": {"name": "imagefolder", "classes": len(train_ds.classes), "train_images": len(train_ds),
                      "val_images": len(val_ds)}}
    mcfg = cfg.method_config(len(loader))
    mcfg.check_run_length(len(loader) * cfg.epochs)
    method = get_method(cfg.method)(mcfg)
    ident["params"] = method.params()
    key = run_id({**ident, "extra_config": {"imagenet": identity}})
    ckdir = checkpoint_dir(cfg, key)
    last = os.path.join(ckdir, "last.pt")
    state = None
    if resume and os.path.exists(last):
        state = torch.load(last, map_location=dist.device, weights_only=False)
        if state.get("key") != key:
            raise ValueError(f"--resume: {last} is a checkpoint of another configuration (run {state.get('key')}, "
                             f"this one {key})")

    model = build_model(cfg.arch, len(train_ds.classes), cfg.seed)
    layers = prunable_layers(model)
    model.to(dist.device)
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if cuda else "none")
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    recipe = Recipe(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd, nesterov=cfg.nesterov,
                    schedule=cfg.schedule, warmup_epochs=cfg.warmup, milestones=tuple(cfg.milestones),
                    label_smoothing=cfg.label_smoothing, seed=cfg.seed, amp=amp, channels_last=cfg.channels_last)
    kill = os.environ.get(KILL_ENV)
    trainer = LoaderTrainer(model, layers, loader, recipe, dist=dist,
                            score_pool=_pool_loader(pool_ds, cfg.score_pool, cfg.seed),
                            kill_at_step=int(kill) if kill else None)
    total = sum(l.numel for l in layers)
    target = max(1, round(cfg.target_density * total))
    ctx = PruneContext(model, trainer, layers, [target], mcfg, seeds=[cfg.seed], method_name=cfg.method,
                       input_shape=(3, cfg.image_size, cfg.image_size))
    guard_method(method, ctx)
    store = ResultStore(cfg.out) if dist.main else None
    rows: list[dict] = []
    elapsed_before = float(state["wall_s"]) if state is not None else 0.0
    bar = {"evals": state["evals"] if state is not None else 0}

    def wall() -> float:
        return elapsed_before + time.time() - t_start

    def row(stage: str, metrics: dict, ckpt: str) -> dict:
        conn = connectivity_counts(model, layers, (3, cfg.image_size, cfg.image_size))
        epoch = trainer.epoch_counter
        config = {**ident, "target_nnz": target,
                  "extra_config": {"imagenet": identity, "evaluation": {"stage": stage, "epoch": epoch}}}
        extra = {**ctx.extra[0], **metrics, "stage": stage, "epoch": epoch, "run": key, "arch": cfg.arch,
                 "preset": cfg.preset, "density": conn["density"], "effective_density": conn["effective_density"],
                 "dense_weights": conn["dense_weights"], "dead_channels": conn["dead_channels"],
                 "layer_nnz": conn["layer_nnz"], "layer_effective_nnz": conn["layer_effective_nnz"],
                 "checkpoint": ckpt, "world_size": dist.world, "wall_time_total_s": wall(),
                 "steps": trainer.step_counter}
        bias = sum(int((l.bias_mask != 0).sum()) for l in layers if l.bias_mask is not None)
        r = make_row(config, metrics={"train_acc": metrics.get("train_top1"), "heldout_acc": metrics["top1"],
                                      "final_loss": metrics["val_loss"], "diverged": bool(trainer.diverged.any()),
                                      "weight_nnz": conn["weight_nnz"], "bias_nnz": bias,
                                      "effective_nnz": conn["effective_nnz"], "dead_units": sum(conn["dead_channels"])},
                     extra=extra, engine=f"torch-ddp-{dist.device.type}x{dist.world}", wall_time_s=wall())
        if store is not None:
            store.write([r])
        rows.append(r)
        return r

    def save(path_names: list[str], final: bool = False) -> None:
        if not dist.main:
            return
        os.makedirs(ckdir, exist_ok=True)
        ck = {"key": key, "identity": identity, "model": model.state_dict(), "trainer": trainer.state_dict(),
              "method": method_state(method), "context": context_state(ctx), "wall_s": wall(),
              "evals": bar["evals"], "final": final}
        for name in path_names:
            write_atomically(os.path.join(ckdir, name), lambda tmp: torch.save(ck, tmp))

    def on_epoch() -> None:
        g = trainer.epoch_counter
        ep = trainer.last_epoch
        _say(dist, quiet, f"epoch {g}: train top-1 {ep.get('train_top1', 0):.4f} loss {ep.get('train_loss', 0):.4f} "
                          f"{ep.get('images_per_s', 0):.1f} img/s, density {float(ctx.weight_nnz()[0]) / total:.4f}")
        names = ["last.pt"] + ([f"epoch-{g:04d}.pt"] if cfg.keep_checkpoints else [])
        if g % cfg.eval_every == 0:
            m = evaluate(model, val_ds, dist, batch_size=per_rank, workers=cfg.workers, amp_dtype=trainer.amp_dtype,
                         channels_last=trainer.channels_last)
            bar["evals"] += 1
            ckpt = os.path.join(ckdir, names[-1])
            row("epoch", {**m, **{k: ep[k] for k in ("train_top1", "train_loss", "images_per_s")}}, ckpt)
            _say(dist, quiet, f"epoch {g}: val top-1 {m['top1']:.4f} top-5 {m['top5']:.4f}")
        save(names)

    trainer.epoch_callbacks.append(on_epoch)
    if state is not None:
        if state.get("final"):
            _say(dist, quiet, f"run {key} is complete (final checkpoint {last}); nothing to resume")
            return rows
        trainer.replay = Replay(epoch=state["trainer"]["epoch_counter"], state=state, method=method, ctx=ctx,
                                snapshots=state["trainer"]["snapshots"])
        _say(dist, quiet, f"resuming run {key} after epoch {trainer.replay.epoch} from {last}")
    _say(dist, quiet, f"run {key}: {cfg.arch} {cfg.method} to {target} of {total} weights "
                      f"({cfg.target_density:g}), {dist.world} process(es) on {dist.device.type}")
    run_method(method, ctx)
    if trainer.replay is not None:  # the checkpoint lay after the last epoch
        trainer.replay.finish(trainer)
    m = evaluate(model, val_ds, dist, batch_size=per_rank, workers=cfg.workers, amp_dtype=trainer.amp_dtype,
                 channels_last=trainer.channels_last)
    final = os.path.join(ckdir, "final.pt")
    row("final", {**m, "images_per_s": trainer.last_epoch.get("images_per_s")}, final)
    save(["final.pt", "last.pt"], final=True)
    _say(dist, quiet, f"final: val top-1 {m['top1']:.4f} top-5 {m['top5']:.4f}, "
                      f"{int(ctx.weight_nnz()[0])} weights; rows in {cfg.out}, checkpoint {final}")
    return rows


# -- command line (the torchrun entry) ---------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """Flags: the config's fields, every method's fields (given ones must apply), ``--preset``,
    ``--resume``, ``--quiet``. ``cubist imagenet`` generates the same flags from the same fields."""
    p = argparse.ArgumentParser(prog="python -m pruners.imagenet", allow_abbrev=False,
                                description="One pruning run on an ImageFolder data set (launch with torchrun).")
    p.add_argument("--data", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--preset", default="")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    _add_fields(p, ImageNetConfig, "")
    seen = set()
    for name, cls in sorted(load_methods().items()):
        for f in dataclasses.fields(cls.Config):
            if f.name not in seen:
                seen.add(f.name)
                _add_field(p, f, "m_")
    return p


def _add_fields(p, cls, prefix):
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True):
            _add_field(p, f, prefix)


def _add_field(p, f, prefix):
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kw = {"dest": prefix + f.name, "default": None}
    if isinstance(default, bool):
        kw["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, tuple):
        item = f.metadata.get("item") or (type(default[0]) if default else str)
        kw["type"] = lambda t, item=item: tuple(item(v) for v in t.split(",") if v.strip())
    else:
        kw["type"] = type(default) if default is not None else str
    p.add_argument("--" + f.metadata.get("flag", f.name).replace("_", "-"), **kw)


def config_from_args(args) -> ImageNetConfig:
    """The run's config from parsed flags (a preset first, explicit flags over it)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ImageNetConfig)
             if getattr(args, f.name, None) is not None}
    cls = get_method(args.method)
    known = {f.name for f in dataclasses.fields(cls.Config)}
    params = {}
    for k, v in vars(args).items():
        if k.startswith("m_") and v is not None:
            if k[2:] not in known:
                raise ValueError(f"{_flag(k[2:])} does not apply to method {args.method}")
            params[k[2:]] = v
    given.update(data=args.data, method=args.method)
    if args.preset:
        given, params = apply_preset(args.preset, given, params)
    return ImageNetConfig(**given, method_params=params)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        cfg = config_from_args(args)
        run(cfg, resume=args.resume, quiet=args.quiet)
    except ValueError as e:
        print(f"pruners.imagenet: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as td
        if td.is_available() and td.is_initialized():
            td.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
