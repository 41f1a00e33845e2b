#!/usr/bin/env bash
# Creates bench/.venv-forest with scikit-learn and numpy from PyPI, for bench/forest.py (the
# random forest benchmark). Small (about 150 MB) and separate from bench/.venv (PyTorch), so
# the forest benchmark does not need the PyTorch setup.
#
# Usage: bash bench/setup-forest.sh        (idempotent: skips what is already there)
#        SKLEARN_VERSION=1.7.2 bash bench/setup-forest.sh
# Needs: python3 (3.10+) with venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-forest"
py="$venv/bin/python"
spec="scikit-learn${SKLEARN_VERSION:+==$SKLEARN_VERSION}"

if [[ -x "$py" ]] && "$py" -c "import sklearn, numpy" 2>/dev/null \
    && { [[ -z "${SKLEARN_VERSION:-}" ]] || "$py" -c "import sklearn; assert sklearn.__version__ == '$SKLEARN_VERSION'"; }; then
    echo "bench/.venv-forest already has scikit-learn"
else
    python3 -m venv "$venv"
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet "$spec" numpy
fi
"$py" -c "import sklearn, numpy; print(f'scikit-learn {sklearn.__version__}, numpy {numpy.__version__}: OK')"
