#!/usr/bin/env bash
# Create .venv (Python 3.11) with pinned dependencies, Lava and norse; idempotent.
# The stamp file records the hash of the inputs so a re-run with unchanged pins is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(cat constraints.txt requirements.txt scripts/setup_env.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
command -v "$PY" >/dev/null || { echo "setup: $PY not found (Python 3.11 is required by the Lava pins)" >&2; exit 1; }
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
echo "setup: installing pinned dependencies into $VENV (first run takes about a minute)" >&2
$PIP install -c constraints.txt -r requirements.txt
# lava-nc / lava-dl declare Python <3.11 and torch <2.4: install without their metadata pins
# (compat shims live in deploy/lava_compat.py); norse without deps so it cannot move torch.
$PIP install -c constraints.txt --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
$PIP install -c constraints.txt --no-deps norse==1.1.0
$PIP install -c constraints.txt --no-deps -e .
$VENV/bin/python - <<'PY'
import numpy, torch
assert numpy.__version__ == "1.26.4", numpy.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
PY
echo "$want" > "$STAMP"
