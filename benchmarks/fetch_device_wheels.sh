#!/usr/bin/env bash
# Wheels the GPU machine (Python 3.12, no internet, no kornia) needs to run chimeramix from the repo root.
# Run here, in the repo root; then, on the device: pip install --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info; grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
for pkg in "kornia==$(.venv/bin/python -c 'import kornia; print(kornia.__version__)')" \
           "kornia_rs==$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("kornia_rs"))')"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pkg"
done
ls -la .whl
