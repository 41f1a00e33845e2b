#!/usr/bin/env python3
"""Writes trainer/tests/fixtures/recurrent.json: the last hidden state PyTorch's nn.RNN (tanh) and
nn.LSTM compute for fixed weights and inputs, and the gradients of a fixed loss on it, for the
trainer's recurrent layer (trainer/src/layers/recurrent.rs) to replay and compare.

    bench/.venv/bin/python bench/recurrent_fixture.py      (bash bench/setup.sh first)

Sizes: batch 3, 5 steps of 6 features, 4 hidden units. Parameter `k` (weight_ih_l0, weight_hh_l0,
bias_ih_l0, bias_hh_l0 in that order) has values `0.4 sin(0.9 i + 1.7 k)`; input element i is
`cos(0.37 i)`. The loss is `sum_j h[b, j] * (j + 1 - b)`, so every unit and image weighs differently.
"""

import json
import math
import os

import torch

BATCH, STEPS, FEATURES, HIDDEN = 3, 5, 6, 4
NAMES = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def case(cell: str) -> dict:
    torch.manual_seed(0)
    module = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM}[cell](
        FEATURES, HIDDEN, batch_first=True
    )
    params = {}
    for k, name in enumerate(NAMES):
        p = getattr(module, name + "_l0")
        values = [0.4 * math.sin(0.9 * i + 1.7 * k) for i in range(p.numel())]
        with torch.no_grad():
            p.copy_(torch.tensor(values, dtype=torch.float32).reshape(p.shape))
        params[name] = {"shape": list(p.shape), "values": values}
    x = torch.tensor(
        [math.cos(0.37 * i) for i in range(BATCH * STEPS * FEATURES)], dtype=torch.float32
    ).reshape(BATCH, STEPS, FEATURES)
    out, _ = module(x)
    last = out[:, -1, :]
    weights = torch.tensor(
        [[j + 1 - b for j in range(HIDDEN)] for b in range(BATCH)], dtype=torch.float32
    )
    (last * weights).sum().backward()
    return {
        "cell": cell,
        "params": params,
        "input": x.flatten().tolist(),
        "last_hidden": last.detach().flatten().tolist(),
        "grads": {n: getattr(module, n + "_l0").grad.flatten().tolist() for n in NAMES},
    }


def main() -> None:
    out = {
        "torch_version": torch.__version__,
        "batch": BATCH,
        "steps": STEPS,
        "features": FEATURES,
        "hidden": HIDDEN,
        "cases": [case("elman"), case("lstm")],
    }
    path = os.path.join(os.path.dirname(__file__), "..", "trainer", "tests", "fixtures", "recurrent.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
