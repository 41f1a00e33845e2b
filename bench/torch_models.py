#!/usr/bin/env python3
"""PyTorch twins of the trainer's models, trained and timed the same way. The twins are built
from the trainer's own description of each network (`trainer describe`), so the two sides
cannot drift apart.

Run with the venv's python (bash bench/setup.sh first):

    bench/.venv/bin/python bench/torch_models.py [--epochs 3] [--models s5-ann ...]

For every model it prints one JSON object on its own line to stdout (progress goes to stderr):

    {"id": "s5-ann", "torch_version": "...", "threads": 2, "epochs": 3,
     "epoch_seconds": [...], "median_epoch_seconds": ..., "train_loss": [...],
     "train_accuracy": [...], "test_accuracy": 0.85,
     "infer_images": 2000, "infer_images_per_second": [...], "median_infer_images_per_second": ...}

Settings, as the trainer's (trainer/src/arch.rs, trainer/src/train.rs): all 60,000 training
images, reshuffled every epoch, batch 64 (last batch 60,000 mod 64 = 32), Adam lr 1e-3 (betas
0.9/0.999, eps 1e-8, no weight decay), cross-entropy, input (pixel - 73) / (255 * 0.353)
computed per batch from the raw bytes, and per batch the loss read back as a number and the
training accuracy counted, as the trainer does. Training runs on `--threads` threads (2).
Weights use PyTorch's default initialisation.

With --skip-train it only times inference, on the freshly initialised model (bench/compare.py
uses this to interleave PyTorch and infer-core inference runs); "test_accuracy" is then that of
an untrained model.

Batch-1 inference: eval mode, `torch.inference_mode()`, one thread, one test image at a time
(a `[1, 1, 28, 28]` float32 tensor already normalised), after a warm-up; images/s over
`--infer-images` test images, repeated `--infer-reps` times.
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

PIXEL_ZERO = 73
PIXEL_SCALE = 1.0 / (255.0 * 0.353)
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"


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


def build_layers(layers: list[dict], image: bool) -> tuple[nn.Sequential, bool]:
    """PyTorch modules for the trainer's layer list (`trainer describe`), and whether the output
    is still an image. Channel and feature counts come from PyTorch's lazy modules, so no shape
    rule is written twice; only whether a tensor is an image or a vector is tracked (for
    BatchNorm's flavour)."""
    mods: list[nn.Module] = []
    for layer in layers:
        ((kind, p),) = layer.items()
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
            mods.append(nn.LazyBatchNorm2d() if image else nn.LazyBatchNorm1d())
        elif kind == "GlobalAvgPool":
            mods.append(GlobalAvgPool())
            image = False
        elif kind == "Residual":
            body, image_out = build_layers(p["body"], image)
            shortcut, _ = build_layers(p["shortcut"], image)
            mods.append(Residual(body, shortcut))
            image = image_out
        else:
            raise SystemExit(f"layer {kind} has no PyTorch twin in bench/torch_models.py")
    return nn.Sequential(*mods), image


def build_model(arch: dict) -> nn.Module:
    """The PyTorch twin of one architecture of `trainer describe`, its lazy modules
    materialised with PyTorch's default initialisation."""
    model, _ = build_layers(arch["layers"], "Image" in arch["input"])
    shape = arch["input"]["Image"]
    model(torch.zeros(1, shape["channels"], shape["height"], shape["width"]))
    return model


def describe(trainer: str | None) -> dict[str, dict]:
    """Every architecture the trainer knows, by id (`trainer describe`)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [trainer, "describe"] if trainer else ["cargo", "run", "--release", "-q", "-p", "trainer", "--", "describe"]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    return {a["id"]: a for a in json.loads(out)}


BATCH_SIZE = 64
LEARNING_RATE = 1e-3


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


def normalise(raw: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32, exactly the trainer's (p - 73) * (1 / (255 * 0.353))."""
    return (raw.to(torch.float32) - PIXEL_ZERO) * PIXEL_SCALE


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_model(arch: dict, data: dict[str, torch.Tensor], args: argparse.Namespace) -> dict:
    model_id = arch["id"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(arch)
    params = sum(p.numel() for p in model.parameters())
    if params != arch["param_count"]:
        raise SystemExit(f"{model_id}: {params} parameters, trainer has {arch['param_count']}")
    opt = torch.optim.Adam(
        model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
    )
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    train_x, train_y = data["train_x"], data["train_y"]
    n = train_x.shape[0] if args.train_limit is None else min(args.train_limit, train_x.shape[0])
    epoch_seconds, losses, accuracies = [], [], []
    epochs = 0 if args.skip_train else args.epochs
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct, batches = 0.0, 0, 0
        for b in range(0, n, BATCH_SIZE):
            idx = order[b : b + BATCH_SIZE]
            x = normalise(train_x[idx])
            y = train_y[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            correct += int((logits.argmax(dim=1) == y).sum())
            batches += 1
        seconds = time.perf_counter() - start
        epoch_seconds.append(seconds)
        losses.append(loss_sum / batches)
        accuracies.append(correct / n)
        log(
            f"torch {model_id} epoch {epoch}/{args.epochs}: loss {losses[-1]:.4f}, "
            f"train accuracy {100 * accuracies[-1]:.2f}%, {seconds:.2f} s"
        )

    model.eval()
    test_x, test_y = data["test_x"], data["test_y"]
    correct = 0
    with torch.inference_mode():
        for b in range(0, test_x.shape[0], 500):
            pred = model(normalise(test_x[b : b + 500])).argmax(dim=1)
            correct += int((pred == test_y[b : b + 500]).sum())
    test_accuracy = correct / test_x.shape[0]
    if not args.skip_train:
        log(f"torch {model_id}: test accuracy {100 * test_accuracy:.2f}%")

    # Batch-1 inference on one thread.
    torch.set_num_threads(1)
    count = min(args.infer_images, test_x.shape[0])
    images = [normalise(test_x[i : i + 1]).contiguous() for i in range(count)]
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
        "epochs": 0 if args.skip_train else args.epochs,
        "train_images": n,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "epoch_seconds": epoch_seconds,
        "median_epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "train_loss": losses,
        "train_accuracy": accuracies,
        "test_accuracy": test_accuracy,
        "infer_threads": 1,
        "infer_images": count,
        "infer_images_per_second": rates,
        "median_infer_images_per_second": statistics.median(rates),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["s5-ann", "s5-cnn", "s3-lenet-base"])
    p.add_argument("--trainer", default=None,
                   help="the trainer binary whose `describe` gives the architectures "
                        "(default: cargo run --release -p trainer)")
    p.add_argument("--threads", type=int, default=2, help="training threads (default 2)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--data-dir", default=os.environ.get("FASHION_MNIST_DIR") or DEFAULT_DATA_DIR
    )
    p.add_argument("--train-limit", type=int, default=None, help="first N images (smoke runs)")
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
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    archs = describe(args.trainer)
    unknown = [m for m in args.models if m not in archs]
    if unknown:
        p.error(f"unknown model ids {unknown} (the trainer knows: {', '.join(archs)})")
    data = load(args.data_dir)
    for model_id in args.models:
        print(json.dumps(bench_model(archs[model_id], data, args)), flush=True)


if __name__ == "__main__":
    main()
