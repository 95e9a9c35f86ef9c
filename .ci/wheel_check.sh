#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it (not editable) with its dependencies from the package
# index into a fresh venv, and from an empty folder list the zoo and run README command 1 (train + evaluate).
# Asserts: the zoo is listed, accuracy >= 0.93, built ONNX files land in the cache folder, none in site-packages.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$(cd "$REPO/../shared/data/hymenoptera" && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Build from a copy of the source files git knows (tracked, or new and not ignored), so nothing left in the work
# tree (build/, built models) can slip into the wheel.
mkdir "$WORK/src"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' file; do if [ -e "$file" ]; then printf '%s\0' "$file"; fi; done \
    | xargs -0 cp --parents -t "$WORK/src")
"$PYTHON" -m pip wheel --quiet --no-deps -w "$WORK/wheels" "$WORK/src"
WHEEL="$(ls "$WORK"/wheels/cnncodes-*.whl)"
echo "wheel check: built $(basename "$WHEEL")"

"$PYTHON" -m venv "$WORK/venv"
VENV_PYTHON="$WORK/venv/bin/python"
"$VENV_PYTHON" -m pip install --quiet --upgrade pip
"$VENV_PYTHON" -m pip install --quiet "$WHEEL"
SITE="$("$VENV_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# onnx and onnxruntime ship test models of their own: what counts is what cnncodes brings or writes.
find "$SITE" -name '*.onnx' | sort > "$WORK/onnx_before.txt"

# An empty folder and a fresh cache, as for a new user; the models folder is <cache>/models.
mkdir "$WORK/empty"
cd "$WORK/empty"
unset CNNCODES_MODELS_DIR
export CNNCODES_CACHE="$WORK/cache"
PATH="$WORK/venv/bin:$PATH"

cnncodes models > models.txt
grep -q '^efficientnet_lite0 ' models.txt || { echo "wheel check: the zoo is empty"; cat models.txt; exit 1; }
echo "wheel check: cnncodes models lists $(($(wc -l < models.txt) - 2)) backbones"

# README command 1, with the data as an absolute path.
cnncodes --quiet train "$DATA/train" -o model.skops
cnncodes --quiet evaluate model.skops "$DATA/val" --format json > evaluate.json
"$VENV_PYTHON" - <<'PYTHON'
import json

accuracy = json.load(open("evaluate.json"))["accuracy"]
print(f"wheel check: accuracy {accuracy:.4f} on hymenoptera/val")
assert accuracy >= 0.93, f"accuracy {accuracy:.4f} < 0.93"
PYTHON

find "$SITE" -name '*.onnx' | sort > "$WORK/onnx_after.txt"
NEW_ONNX="$(comm -13 "$WORK/onnx_before.txt" "$WORK/onnx_after.txt"; find "$SITE/cnncodes" -name '*.onnx')"
[ -z "$NEW_ONNX" ] || { echo "wheel check: ONNX files in site-packages: $NEW_ONNX"; exit 1; }
[ -n "$(find "$CNNCODES_CACHE/models" -name '*.onnx')" ] || { echo "wheel check: no ONNX file in <cache>/models"; exit 1; }
echo "wheel check: passed (no ONNX file in site-packages; models built under the cache folder)"
