#!/usr/bin/env python3
"""PyTorch twins of the trainer's three models (trainer/src/arch.rs), trained and timed the same way.

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
import sys
import time

import numpy as np
import torch
from torch import nn

PIXEL_ZERO = 73
PIXEL_SCALE = 1.0 / (255.0 * 0.353)
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"


def s5_ann() -> nn.Module:
    """MLP 784-256-128-10, ReLU, dropout 0.2 after both hidden layers."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )


def s5_cnn() -> nn.Module:
    """conv3x3 32 pad 1 + MaxPool2, conv3x3 64 pad 1 + MaxPool2, FC 3136-128, dropout 0.25, FC 10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(3136, 128),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(128, 10),
    )


def s3_lenet_base() -> nn.Module:
    """LeNet-5: conv5x5 6, AvgPool2, conv5x5 16, AvgPool2 (no padding), FC 256-120-84-10, ReLU."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5),
        nn.ReLU(),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.AvgPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(256, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


MODELS = {"s5-ann": s5_ann, "s5-cnn": s5_cnn, "s3-lenet-base": s3_lenet_base}
# Parameter counts from trainer/src/arch.rs's tests: a cheap check that the twins match.
PARAM_COUNTS = {"s5-ann": 235_146, "s5-cnn": 421_642, "s3-lenet-base": 44_426}
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


def bench_model(model_id: str, data: dict[str, torch.Tensor], args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = MODELS[model_id]()
    params = sum(p.numel() for p in model.parameters())
    if params != PARAM_COUNTS[model_id]:
        raise SystemExit(f"{model_id}: {params} parameters, trainer has {PARAM_COUNTS[model_id]}")
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
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
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
    data = load(args.data_dir)
    for model_id in args.models:
        print(json.dumps(bench_model(model_id, data, args)), flush=True)


if __name__ == "__main__":
    main()
