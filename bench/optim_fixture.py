#!/usr/bin/env python3
"""Writes trainer/tests/fixtures/optim.json: the parameters PyTorch's torch.optim gives after each
of several steps, for every optimizer the trainer implements (trainer/src/optim.rs), from fixed
starting parameters and a fixed sequence of gradients. The trainer's tests replay the same steps
with its own optimizers and compare (1e-6 relative).

    bench/.venv/bin/python bench/optim_fixture.py      (bash bench/setup.sh first)

Parameters: two tensors, `[3, 4]` and `[5]`, values `sin(0.7 i + k)` (k = 0, 1). The gradient of
step t (1-based) for element i of tensor k is `cos(1.3 i + 0.5 t + k) * (1 + 0.1 t)`, so it
changes sign and size from step to step. Each case is an optimizer name and its arguments; the
ones not given are PyTorch's defaults.
"""

import json
import math
import os

import torch

STEPS = 6
SHAPES = [(3, 4), (5,)]

CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw", {}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1, "betas": [0.8, 0.95]}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.005, "momentum": 0.9, "centered": True, "weight_decay": 0.01}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("adadelta", {}),
    ("adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.01}),
    ("adamax", {}),
    ("adamax", {"lr": 0.01, "weight_decay": 0.01}),
    ("nadam", {}),
    ("nadam", {"lr": 0.01, "weight_decay": 0.01, "momentum_decay": 0.01}),
]

CLASSES = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
}


def start() -> list[list[float]]:
    return [
        [math.sin(0.7 * i + k) for i in range(math.prod(shape))] for k, shape in enumerate(SHAPES)
    ]


def grad(k: int, n: int, t: int) -> list[float]:
    return [math.cos(1.3 * i + 0.5 * t + k) * (1 + 0.1 * t) for i in range(n)]


def run(name: str, args: dict) -> list[list[list[float]]]:
    params = [
        torch.tensor(v, dtype=torch.float32).reshape(shape).requires_grad_()
        for v, shape in zip(start(), SHAPES)
    ]
    kwargs = dict(args)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    # foreach=False: the plain per-tensor loops, the reference implementation.
    opt = CLASSES[name](params, foreach=False, **kwargs)
    history = []
    for t in range(1, STEPS + 1):
        for k, p in enumerate(params):
            g = torch.tensor(grad(k, p.numel(), t), dtype=torch.float32).reshape(p.shape)
            p.grad = g
        opt.step()
        history.append([p.detach().flatten().tolist() for p in params])
    return history


def main() -> None:
    out = {
        "torch_version": torch.__version__,
        "steps": STEPS,
        "shapes": SHAPES,
        "start": start(),
        "cases": [
            {"optimizer": name, "args": args, "after_step": run(name, args)} for name, args in CASES
        ],
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "trainer", "tests", "fixtures", "optim.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{path}: {len(CASES)} cases, {STEPS} steps each, torch {torch.__version__}")


if __name__ == "__main__":
    main()
