#!/usr/bin/env python3
"""PyTorch twins of the trainer's models, trained and timed the same way. The twins are built
from the trainer's own description of each network (`trainer describe`), so the two sides
cannot drift apart.

Run with the venv's python (bash bench/setup.sh first):

    bench/.venv/bin/python bench/torch_models.py [--epochs 3] [--models s5-ann ...]
    bench/.venv/bin/python bench/torch_models.py --check [--models ...]

For every model it prints one JSON object on its own line to stdout (progress goes to stderr):

    {"id": "s5-ann", "torch_version": "...", "threads": 2, "epochs": 3, "batch_size": 64,
     "optimizer": {"Adam": {...}}, "train_images": 48000, "validation_images": 12000,
     "epoch_seconds": [...], "median_epoch_seconds": ..., "train_loss": [...],
     "train_accuracy": [...], "val_accuracy": [...], "test_accuracy": 0.85,
     "infer_images": 2000, "infer_images_per_second": [...], "median_infer_images_per_second": ...}

Settings, as the trainer's (each model's `recipe` in `trainer describe`; trainer/src/train.rs):
the recipe's epochs (or --epochs), mini-batch size (or --batch), optimizer (torch.optim with
the recipe's hyper-parameters, see OPTIMIZERS), step learning-rate schedule, split and
augmentation. The split is drawn as the trainer's (dataset/src/splits.rs): stratified, each
part taking round-half-up(n_class * percent / 100) images of each class, with PyTorch's own
random draw from the seed (so the same sizes, not the same images). The training images are
reshuffled every epoch; cross-entropy loss; input (pixel - 73) / (255 * 0.353) computed per
batch from the raw bytes (after augmentation, if any); per batch the loss is read back as a
number and the training accuracy counted, as the trainer does. With a validation part, the
validation loss and accuracy are computed after every epoch, outside the timed part (as the
trainer does). Training runs on `--threads` threads (2). Weights use PyTorch's default
initialisation.

With --skip-train it only times inference, on the freshly initialised model (bench/compare.py
uses this to interleave PyTorch and infer-core inference runs); "test_accuracy" is then that of
an untrained model.

Batch-1 inference: eval mode, `torch.inference_mode()`, one thread, one test image at a time
(a `[1, 1, 28, 28]` float32 tensor already normalised), after a warm-up; images/s over
`--infer-images` test images, repeated `--infer-reps` times.

--check needs no data: it builds the twin of every model of `trainer describe` (or of
--models), checks that its parameter count is the trainer's `param_count`, that its output is
`[N, 10]` in training and in evaluation mode, and that the recipe's optimizer (and schedule)
build and take one step; it prints one line per model and fails on the first mismatch.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PIXEL_ZERO = 73
PIXEL_SCALE = 1.0 / (255.0 * 0.353)
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_MODELS = ["s5-ann", "s5-cnn", "s3-lenet-base"]
NUM_CLASSES = 10


class Residual(nn.Module):
    """`body(x) + shortcut(x)` (an empty shortcut is the identity), as the trainer's Residual."""

    def __init__(self, body: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class GlobalAvgPool(nn.Module):
    """The mean of each channel: `[n, c, h, w]` to `[n, c]`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class PadReplicate(nn.Module):
    """`[n, 1, h, w]` to `[n, channels, h + 2 pad, w + 2 pad]`: `pad` zeros (zero in the
    normalised domain, as the input is already normalised) on every side, then the one channel
    repeated, as the trainer's PadReplicate."""

    def __init__(self, pad: int, channels: int):
        super().__init__()
        self.pad = pad
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            raise ValueError(f"PadReplicate takes a 1-channel image, got {list(x.shape)}")
        p = self.pad
        return F.pad(x, (p, p, p, p)).repeat(1, self.channels, 1, 1)


class RowsRecurrent(nn.Module):
    """An Elman RNN (tanh) or LSTM over the rows of a 1-channel image, `[n, 1, h, w]` to its last
    hidden state `[n, hidden]`, as the trainer's Recurrent. The PyTorch module is made at the first
    forward pass (its input size is the image width), like a lazy module; the LSTM's forget-gate
    bias starts at 1.0 (`bias_ih` 1.0, `bias_hh` 0.0 on that slice), as the trainer's."""

    def __init__(self, cell: str, hidden: int):
        super().__init__()
        self.cell = cell
        self.hidden = hidden
        self.rnn: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            raise ValueError(f"Recurrent takes a 1-channel image, got {list(x.shape)}")
        rows = x[:, 0]
        if self.rnn is None:
            kind = {"Elman": nn.RNN, "Lstm": nn.LSTM}[self.cell]
            self.rnn = kind(rows.shape[2], self.hidden, batch_first=True).to(x.device)
            if self.cell == "Lstm":
                h = self.hidden
                with torch.no_grad():
                    self.rnn.bias_ih_l0[h : 2 * h] = 1.0
                    self.rnn.bias_hh_l0[h : 2 * h] = 0.0
        out, _ = self.rnn(rows)
        return out[:, -1]


def build_layers(layers: list, image: bool) -> tuple[nn.Sequential, bool]:
    """PyTorch modules for the trainer's layer list (`trainer describe`), and whether the output
    is still an image. Channel and feature counts come from PyTorch's lazy modules, so no shape
    rule is written twice; only whether a tensor is an image or a vector is tracked (for
    BatchNorm's flavour). Pools have no padding and floor odd sizes (PyTorch's default,
    `ceil_mode=False`, as the trainer); Dropout on an image drops single elements, as the
    trainer's (not whole channels)."""
    mods: list[nn.Module] = []
    for layer in layers:
        # Layers without fields are `{"Relu": null}` (or a bare "Relu").
        kind, p = (layer, None) if isinstance(layer, str) else next(iter(layer.items()))
        if kind == "Conv2d":
            mods.append(nn.LazyConv2d(p["out_ch"], p["kernel"], stride=p["stride"], padding=p["padding"]))
        elif kind == "Dense":
            mods.append(nn.LazyLinear(p["out_dim"]))
        elif kind == "Relu":
            mods.append(nn.ReLU())
        elif kind == "LeakyRelu":
            mods.append(nn.LeakyReLU(p["alpha"]))
        elif kind == "MaxPool2d":
            mods.append(nn.MaxPool2d(p["kernel"], p["stride"]))
        elif kind == "AvgPool2d":
            mods.append(nn.AvgPool2d(p["kernel"], p["stride"]))
        elif kind == "Flatten":
            mods.append(nn.Flatten())
            image = False
        elif kind == "Dropout":
            mods.append(nn.Dropout(p["p"]))
        elif kind == "BatchNorm":
            # PyTorch's defaults are the trainer's: momentum 0.1, eps 1e-5.
            mods.append(nn.LazyBatchNorm2d() if image else nn.LazyBatchNorm1d())
        elif kind == "GlobalAvgPool":
            mods.append(GlobalAvgPool())
            image = False
        elif kind == "PadReplicate":
            if not image:
                raise SystemExit("PadReplicate takes an image")
            mods.append(PadReplicate(p["pad"], p["channels"]))
        elif kind == "Recurrent":
            if not image:
                raise SystemExit("Recurrent takes an image")
            mods.append(RowsRecurrent(p["cell"], p["hidden"]))
            image = False
        elif kind == "Residual":
            body, image_out = build_layers(p["body"], image)
            shortcut, _ = build_layers(p["shortcut"], image)
            mods.append(Residual(body, shortcut))
            image = image_out
        else:
            raise SystemExit(f"layer {kind} has no PyTorch twin in bench/torch_models.py")
    return nn.Sequential(*mods), image


def input_shape(arch: dict) -> tuple[int, ...]:
    """The shape of one input of `arch` (`[c, h, w]` for an image, `[n]` for a vector)."""
    ((kind, shape),) = arch["input"].items()
    if kind == "Image":
        return (shape["channels"], shape["height"], shape["width"])
    if kind == "Flat":
        return (shape,)
    raise SystemExit(f"{arch['id']}: input {arch['input']} has no PyTorch twin")


def build_model(arch: dict) -> nn.Module:
    """The PyTorch twin of one architecture of `trainer describe`, its lazy modules
    materialised with PyTorch's default initialisation, in training mode. (The materialising
    pass runs in evaluation mode: it moves no BatchNorm running statistics and draws no
    dropout mask.)"""
    shape = input_shape(arch)
    model, _ = build_layers(arch["layers"], len(shape) == 3)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *shape))
    return model.train()


# The trainer's optimizers (`recipe.optimizer`, one key naming the variant) and their
# torch.optim classes. The fields are torch.optim's argument names, except that the trainer's
# `beta1` and `beta2` are PyTorch's `betas` pair.
OPTIMIZERS = {
    "Sgd": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "RmsProp": torch.optim.RMSprop,
    "Adagrad": torch.optim.Adagrad,
    "Adadelta": torch.optim.Adadelta,
    "Adamax": torch.optim.Adamax,
    "NAdam": torch.optim.NAdam,
}


def optimizer_kwargs(config: dict) -> tuple[type, dict]:
    """The torch.optim class and its keyword arguments for a `recipe.optimizer` such as
    `{"Adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08, "weight_decay": 0.0}}`.
    Every field is passed on, so a field torch.optim does not know fails loudly (TypeError)
    instead of being dropped."""
    ((name, fields),) = config.items()
    if name not in OPTIMIZERS:
        raise SystemExit(f"optimizer {name} has no torch.optim twin in bench/torch_models.py")
    kwargs = dict(fields)
    if "beta1" in kwargs or "beta2" in kwargs:
        kwargs["betas"] = (kwargs.pop("beta1"), kwargs.pop("beta2"))
    return OPTIMIZERS[name], kwargs


def make_optimizer(params, config: dict) -> torch.optim.Optimizer:
    cls, kwargs = optimizer_kwargs(config)
    return cls(params, **kwargs)


def make_schedule(opt: torch.optim.Optimizer, schedule: dict | None):
    """The recipe's step schedule (`{"step_size": s, "gamma": g}`: the learning rate of 0-based
    epoch e is `lr * g^(e // s)`, PyTorch's StepLR stepped once per epoch), or None."""
    if schedule is None:
        return None
    return torch.optim.lr_scheduler.StepLR(opt, step_size=schedule["step_size"], gamma=schedule["gamma"])


def describe(trainer: str | None) -> dict[str, dict]:
    """Every architecture the trainer knows, by id (`trainer describe`)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [trainer, "describe"] if trainer else ["cargo", "run", "--release", "-q", "-p", "trainer", "--", "describe"]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    return {a["id"]: a for a in json.loads(out)}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzip) as a uint8 array of its declared shape."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load(data_dir: str) -> dict[str, torch.Tensor]:
    def get(name: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(os.path.join(data_dir, name)).copy())

    return {
        "train_x": get("train-images-idx3-ubyte.gz").reshape(-1, 1, 28, 28),
        "train_y": get("train-labels-idx1-ubyte.gz").long(),
        "test_x": get("t10k-images-idx3-ubyte.gz").reshape(-1, 1, 28, 28),
        "test_y": get("t10k-labels-idx1-ubyte.gz").long(),
    }


def share(n: int, percent: int) -> int:
    """round(n * percent / 100), half up, in integers (the trainer's rounding)."""
    return (2 * n * percent + 100) // 200


def stratified(labels: torch.Tensor, percents: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    """Indices of `len(percents) + 1` disjoint parts: per class, the class's indices shuffled,
    then cut into parts of `share(n_class, percent)` images in the given order, the last part
    taking the rest; each part in ascending index order."""
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(percents) + 1)]
    for c in range(NUM_CLASSES):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        at = 0
        for i, pct in enumerate(percents):
            k = share(len(idx), pct)
            parts[i].append(idx[at : at + k])
            at += k
        parts[-1].append(idx[at:])
    return [torch.cat(p).sort().values for p in parts]


def split(data: dict[str, torch.Tensor], plan, seed: int) -> dict[str, torch.Tensor | None]:
    """Training, validation (None without one) and test images and labels for the recipe's
    split (`"Full"`, `{"Holdout": {"validation_percent": p}}` or `{"Pooled": {"train_percent":
    t, "validation_percent": v}}`; see dataset/src/splits.rs)."""
    gen = torch.Generator().manual_seed(seed)
    if plan == "Full":
        return {"train_x": data["train_x"], "train_y": data["train_y"], "val_x": None,
                "val_y": None, "test_x": data["test_x"], "test_y": data["test_y"]}
    ((kind, p),) = plan.items()
    if kind == "Holdout":
        val, train = stratified(data["train_y"], [p["validation_percent"]], gen)
        x, y = data["train_x"], data["train_y"]
        return {"train_x": x[train], "train_y": y[train], "val_x": x[val], "val_y": y[val],
                "test_x": data["test_x"], "test_y": data["test_y"]}
    if kind == "Pooled":
        # The pool: the training images, then the test images.
        x = torch.cat([data["train_x"], data["test_x"]])
        y = torch.cat([data["train_y"], data["test_y"]])
        train, val, test = stratified(y, [p["train_percent"], p["validation_percent"]], gen)
        return {"train_x": x[train], "train_y": y[train], "val_x": x[val], "val_y": y[val],
                "test_x": x[test], "test_y": y[test]}
    raise SystemExit(f"split {plan} has no twin in bench/torch_models.py")


def warp(raw: torch.Tensor, rotation_degrees: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor,
         zoom: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """Float pixels (0..255) of `raw` (`[n, 1, h, w]`) under one affine transform per image, as
    the trainer's (dataset/src/augment.rs): the output pixel `o` reads the source at
    `c + R(θ)ᵀ (z F (o - c) - d)`, `c` the centre ((side - 1) / 2), `d = (dx, dy)` pixels,
    `F` the left-right mirror where `mirror` is -1, bilinearly, with zeros outside the image.
    In grid_sample's coordinates (`align_corners=True`: `(o - c) / c`) that is the linear map
    `z R(θ)ᵀ F` plus the translation `-R(θ)ᵀ d / c`. Each parameter is a tensor of `n`."""
    n, side = raw.shape[0], raw.shape[-1]
    centre = (side - 1) / 2.0
    theta = torch.deg2rad(rotation_degrees)
    cos, sin = torch.cos(theta), torch.sin(theta)
    affine = torch.stack([
        torch.stack([zoom * cos * mirror, -zoom * sin, -(cos * dx - sin * dy) / centre], dim=1),
        torch.stack([zoom * sin * mirror, zoom * cos, -(sin * dx + cos * dy) / centre], dim=1),
    ], dim=1)
    grid = F.affine_grid(affine, [n, 1, side, side], align_corners=True)
    return F.grid_sample(raw.to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def augment(raw: torch.Tensor, aug: dict, gen: torch.Generator) -> torch.Tensor:
    """`raw` (`[n, 1, 28, 28]` uint8) augmented as the recipe's `augmentation` says, one random
    transform per image (see `warp`): rotation `r (2u - 1)` degrees, shift `28 s (2u - 1)`
    pixels in x and in y, zoom factor `1 + zoom (2u - 1)`, and a left-right mirror with
    probability 1/2 if `horizontal_flip`. The draws are PyTorch's own, from `gen`."""
    n, side = raw.shape[0], raw.shape[-1]

    def signed(r: float) -> torch.Tensor:
        return r * (2.0 * torch.rand(n, generator=gen) - 1.0)

    rotation = signed(aug["rotation_degrees"])
    dx = signed(aug["shift"]) * side
    dy = signed(aug["shift"]) * side
    zoom = 1.0 + signed(aug["zoom"])
    flip = (torch.rand(n, generator=gen) < 0.5) & bool(aug["horizontal_flip"])
    return warp(raw, rotation, dx, dy, zoom, torch.where(flip, -1.0, 1.0))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels (uint8, or float 0..255 after augmentation) -> float32, exactly the trainer's
    (p - 73) * (1 / (255 * 0.353))."""
    return (pixels.to(torch.float32) - PIXEL_ZERO) * PIXEL_SCALE


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...]) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy in evaluation mode, in batches of 500."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for b in range(0, x.shape[0], 500):
            logits = model(normalise(x[b : b + 500]).reshape(-1, *shape))
            loss_sum += float(F.cross_entropy(logits, y[b : b + 500], reduction="sum"))
            correct += int((logits.argmax(dim=1) == y[b : b + 500]).sum())
    return loss_sum / x.shape[0], correct / x.shape[0]


def bench_model(arch: dict, data: dict[str, torch.Tensor], args: argparse.Namespace) -> dict:
    model_id = arch["id"]
    recipe = arch["recipe"]
    epochs = args.epochs or recipe["epochs"]
    batch_size = args.batch or recipe["batch_size"]
    shape = input_shape(arch)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(arch)
    params = sum(p.numel() for p in model.parameters())
    if params != arch["param_count"]:
        raise SystemExit(f"{model_id}: {params} parameters, trainer has {arch['param_count']}")
    opt = make_optimizer(model.parameters(), recipe["optimizer"])
    schedule = make_schedule(opt, recipe["schedule"])
    aug = recipe["augmentation"]
    parts = split(data, recipe["split"], args.seed)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    train_x, train_y = parts["train_x"], parts["train_y"]
    n = train_x.shape[0] if args.train_limit is None else min(args.train_limit, train_x.shape[0])
    train_x, train_y = train_x[:n], train_y[:n]
    epoch_seconds, losses, accuracies, val_losses, val_accuracies = [], [], [], [], []
    if args.skip_train:
        epochs = 0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct, batches = 0.0, 0, 0
        for b in range(0, n, batch_size):
            idx = order[b : b + batch_size]
            raw = train_x[idx]
            x = normalise(augment(raw, aug, gen) if aug else raw).reshape(-1, *shape)
            y = train_y[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.get("grad_clip") is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
            opt.step()
            loss_sum += loss.item()
            correct += int((logits.argmax(dim=1) == y).sum())
            batches += 1
        seconds = time.perf_counter() - start
        if schedule is not None:
            schedule.step()
        epoch_seconds.append(seconds)
        losses.append(loss_sum / batches)
        accuracies.append(correct / n)
        val = ""
        if parts["val_x"] is not None:
            vl, va = evaluate(model, parts["val_x"], parts["val_y"], shape)
            val_losses.append(vl)
            val_accuracies.append(va)
            val = f", validation accuracy {100 * va:.2f}%"
        log(
            f"torch {model_id} epoch {epoch}/{epochs}: loss {losses[-1]:.4f}, "
            f"train accuracy {100 * accuracies[-1]:.2f}%{val}, {seconds:.2f} s"
        )

    test_x, test_y = parts["test_x"], parts["test_y"]
    _, test_accuracy = evaluate(model, test_x, test_y, shape)
    if not args.skip_train:
        log(f"torch {model_id}: test accuracy {100 * test_accuracy:.2f}%")

    # Batch-1 inference on one thread.
    torch.set_num_threads(1)
    count = min(args.infer_images, test_x.shape[0])
    images = [normalise(test_x[i : i + 1]).reshape(1, *shape).contiguous() for i in range(count)]
    rates = []
    with torch.inference_mode():
        for x in images[: min(args.infer_warmup, count)]:
            model(x)
        for _ in range(args.infer_reps):
            start = time.perf_counter()
            for x in images:
                model(x).argmax(dim=1)
            rates.append(count / (time.perf_counter() - start))
    log(
        f"torch {model_id}: batch-1 inference {statistics.median(rates):.0f} images/s "
        f"(median of {len(rates)} x {count} images, 1 thread)"
    )
    return {
        "id": model_id,
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "params": params,
        "threads": args.threads,
        "trained": not args.skip_train,
        "epochs": epochs,
        "train_images": n,
        "validation_images": 0 if parts["val_x"] is None else parts["val_x"].shape[0],
        "test_images": test_x.shape[0],
        "batch_size": batch_size,
        "optimizer": recipe["optimizer"],
        "schedule": recipe["schedule"],
        "split": recipe["split"],
        "augmentation": aug,
        "epoch_seconds": epoch_seconds,
        "median_epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "train_loss": losses,
        "train_accuracy": accuracies,
        "val_loss": val_losses,
        "val_accuracy": val_accuracies,
        "test_accuracy": test_accuracy,
        "infer_threads": 1,
        "infer_images": count,
        "infer_images_per_second": rates,
        "median_infer_images_per_second": statistics.median(rates),
    }


def check_model(arch: dict, batch: int = 3) -> str:
    """Builds the twin of `arch` and checks it against the trainer's description (see the module
    docs); returns a one-line summary, raises AssertionError on a mismatch."""
    model_id = arch["id"]
    shape = input_shape(arch)
    model = build_model(arch)
    params = sum(p.numel() for p in model.parameters())
    assert params == arch["param_count"], (
        f"{model_id}: the twin has {params} parameters, the trainer {arch['param_count']}"
    )
    x = torch.randn(batch, *shape)
    logits = model(x)
    assert list(logits.shape) == [batch, NUM_CLASSES], (
        f"{model_id}: output {list(logits.shape)} in training mode, expected [{batch}, {NUM_CLASSES}]"
    )
    recipe = arch["recipe"]
    opt = make_optimizer(model.parameters(), recipe["optimizer"])
    schedule = make_schedule(opt, recipe["schedule"])
    F.cross_entropy(logits, torch.arange(batch) % NUM_CLASSES).backward()
    opt.step()
    if schedule is not None:
        schedule.step()
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert list(out.shape) == [batch, NUM_CLASSES], (
        f"{model_id}: output {list(out.shape)} in evaluation mode, expected [{batch}, {NUM_CLASSES}]"
    )
    assert torch.isfinite(out).all(), f"{model_id}: non-finite output after one step"
    cls, kwargs = optimizer_kwargs(recipe["optimizer"])
    opt_text = f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    return f"{model_id}: {params} parameters = param_count, output [{batch}, {NUM_CLASSES}], {opt_text}"


def check_augment() -> None:
    """`warp`'s conventions on the cases of dataset/src/augment.rs's tests (same pattern image):
    the identity, a one-pixel shift right and down, a half-pixel shift fading in black, the
    mirror, and a 90° turn counter-clockwise on screen; and a flip-only augmentation mirrors
    about half the images and changes nothing else."""
    side = 28
    image = torch.tensor([(i * 37 + i // side) % 256 for i in range(side * side)],
                         dtype=torch.uint8).reshape(1, 1, side, side)
    src = image[0, 0].to(torch.float32)

    def warped(rot=0.0, dx=0.0, dy=0.0, zoom=1.0, mirror=1.0) -> torch.Tensor:
        t = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731
        return warp(image, t(rot), t(dx), t(dy), t(zoom), t(mirror))[0, 0]

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.allclose(a, b, atol=1e-3))

    assert close(warped(), src), "the identity changes the image"
    right = torch.cat([torch.zeros(side, 1), src[:, :-1]], dim=1)
    down = torch.cat([torch.zeros(1, side), src[:-1, :]], dim=0)
    assert close(warped(dx=1.0), right), "a shift of dx = 1 does not move the content right"
    assert close(warped(dy=1.0), down), "a shift of dy = 1 does not move the content down"
    half = warped(dx=0.5)
    assert close(half[0, 0], src[0, 0] / 2) and close(half[0, 5], (src[0, 4] + src[0, 5]) / 2), (
        "a half-pixel shift does not average neighbours and fade in black"
    )
    assert close(warped(mirror=-1.0), src.flip(1)), "the mirror does not reverse the rows"
    # Counter-clockwise: source (x, y) lands at (y, 27 - x), out[y, x] = src[x, 27 - y].
    assert close(warped(rot=90.0), src.flip(1).T), "a 90° turn is not counter-clockwise"
    gen = torch.Generator().manual_seed(0)
    flip_only = {"rotation_degrees": 0.0, "shift": 0.0, "zoom": 0.0, "horizontal_flip": True}
    outs = augment(image.repeat(64, 1, 1, 1), flip_only, gen)[:, 0]
    mirrored = sum(close(o, src.flip(1)) for o in outs)
    assert all(close(o, src) or close(o, src.flip(1)) for o in outs), "a flip-only draw did more"
    assert 16 <= mirrored <= 48, f"{mirrored} of 64 images mirrored"
    none = dict(flip_only, horizontal_flip=False)
    assert close(augment(image, none, gen)[0, 0], src), "no augmentation changes the image"


def check_split() -> None:
    """The split sizes on a small labelled set: 13 images of each class, 20% held out gives
    round(2.6) = 3 per class; parts are disjoint and cover everything."""
    labels = torch.arange(130) % NUM_CLASSES
    gen = torch.Generator().manual_seed(1)
    val, train = stratified(labels, [20], gen)
    assert (len(val), len(train)) == (30, 100), (len(val), len(train))
    assert torch.equal(torch.cat([val, train]).sort().values, torch.arange(130))
    assert share(5, 50) == 3 and share(5, 30) == 2 and share(10, 25) == 3


def check(archs: dict[str, dict], ids: list[str]) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    check_split()
    check_augment()
    print("split and augmentation conventions: OK", flush=True)
    for model_id in ids:
        print(check_model(archs[model_id]), flush=True)
    print(f"{len(ids)} models: every twin matches the trainer's parameter count and gives [N, 10]",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=None, help="default: each model's recipe")
    p.add_argument("--batch", type=int, default=None, help="mini-batch size (default: each model's recipe)")
    p.add_argument("--models", nargs="+", default=None,
                   help=f"model ids (default: {' '.join(DEFAULT_MODELS)}; with --check, every model)")
    p.add_argument("--check", action="store_true",
                   help="only build each twin and check it against `trainer describe` (no data, no training)")
    p.add_argument("--trainer", default=None,
                   help="the trainer binary whose `describe` gives the architectures "
                        "(default: cargo run --release -p trainer)")
    p.add_argument("--threads", type=int, default=2, help="training threads (default 2)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--data-dir", default=os.environ.get("FASHION_MNIST_DIR") or DEFAULT_DATA_DIR
    )
    p.add_argument("--train-limit", type=int, default=None,
                   help="first N images of the training split (smoke runs)")
    p.add_argument("--infer-images", type=int, default=2000)
    p.add_argument("--infer-warmup", type=int, default=200)
    p.add_argument("--infer-reps", type=int, default=5)
    p.add_argument(
        "--skip-train",
        action="store_true",
        help="inference timing only, on the freshly initialised model (weights do not change "
        "the float work done)",
    )
    args = p.parse_args()
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.batch is not None and args.batch < 1:
        p.error("--batch must be at least 1")
    archs = describe(args.trainer)
    ids = args.models or (list(archs) if args.check else DEFAULT_MODELS)
    unknown = [m for m in ids if m not in archs]
    if unknown:
        p.error(f"unknown model ids {unknown} (the trainer knows: {', '.join(archs)})")
    if args.check:
        check(archs, ids)
        return
    data = load(args.data_dir)
    for model_id in ids:
        print(json.dumps(bench_model(archs[model_id], data, args)), flush=True)


if __name__ == "__main__":
    main()
