#!/usr/bin/env bash
# Creates bench/.venv with PyTorch for the CPU, from PyPI, without the multi-GB CUDA wheels.
#
# PyPI's Linux x86_64 `torch` wheel is a CUDA build whose Requires-Dist pulls nvidia-*,
# cuda-toolkit and triton (several GB), and whose libraries list libcudart, libcublas, libcudnn,
# ... as DT_NEEDED, so `pip install --no-deps torch` alone fails at `import torch`. The CPU-only
# wheels are on download.pytorch.org, which is not reachable here. So:
#   1. pip install --no-deps torch==$TORCH_VERSION       (one ~540 MB wheel, ~1.2 GB installed)
#   2. pip install torch's own pure-Python requirements    (filelock, sympy, networkx, jinja2,
#      fsspec, typing-extensions, setuptools; read from the wheel's metadata, minus
#      nvidia-*/cuda-*/triton) and numpy
#   3. python cuda_stubs.py: compiles a small stand-in (a few KB each) for every CUDA library the
#      wheel links against; each returns "no device"/an error code, so
#      torch.cuda.is_available() is False and the CPU kernels are the official wheel's own.
#   4. checks that torch imports and trains one step on the CPU.
#
# Usage: bash bench/setup.sh            (idempotent: skips what is already there)
#        TORCH_VERSION=2.14.1 bash bench/setup.sh
#        BENCH_TORCH_FULL=1 bash bench/setup.sh   (plain `pip install torch` with all CUDA
#                                                 wheels instead of stubs: several GB)
# Needs: python3 (3.10+) with venv, a C compiler (cc) and readelf (binutils) for the stubs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="$venv/bin/python"
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
start=$(date +%s)

check() {
    "$py" - <<'EOF'
import torch
assert not torch.cuda.is_available()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
loss = torch.nn.functional.cross_entropy(net(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,)))
loss.backward()
opt.step()
import numpy
print(f"torch {torch.__version__} (CPU, {torch.backends.cpu.get_cpu_capability()}), numpy {numpy.__version__}: OK")
EOF
}

if [[ -x "$py" ]] && "$py" -c "import torch, numpy; assert torch.__version__.split('+')[0] == '$TORCH_VERSION'" 2>/dev/null; then
    echo "bench/.venv already has torch $TORCH_VERSION"
    check
    exit 0
fi

for tool in python3 cc readelf; do
    if [[ "$tool" != python3 && -n "${BENCH_TORCH_FULL:-}" ]]; then continue; fi
    command -v "$tool" >/dev/null || { echo "setup.sh: needs $tool" >&2; exit 1; }
done

python3 -m venv "$venv"
"$py" -m pip install --quiet --upgrade pip

if [[ -n "${BENCH_TORCH_FULL:-}" ]]; then
    "$py" -m pip install "torch==$TORCH_VERSION" numpy
else
    "$py" -m pip install --no-deps "torch==$TORCH_VERSION"
    # torch's requirements from its metadata, without the CUDA ones and the extras.
    mapfile -t deps < <("$py" - <<'EOF'
import importlib.metadata as md
import re
for req in md.requires("torch") or []:
    name = re.split(r"[ <>=!~;\[]", req, maxsplit=1)[0].lower()
    if "extra ==" in req or name.startswith(("nvidia-", "cuda-", "triton")):
        continue
    print(req)
EOF
)
    echo "torch's non-CUDA requirements: ${deps[*]}"
    "$py" -m pip install "${deps[@]}" numpy
    "$py" "$here/cuda_stubs.py"
fi

check
echo "bench/.venv: $(du -sh "$venv" | cut -f1), set up in $(( $(date +%s) - start )) s"
