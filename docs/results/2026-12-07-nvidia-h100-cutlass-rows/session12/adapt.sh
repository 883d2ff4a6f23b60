#!/usr/bin/env bash
# adapt.sh OUT H200_PARTS -- H100_PARTS: runs go.sh with the parts for the card this call got.
OUT=${1:?}; shift
h200=(); h100=(); side=200
for a in "$@"; do if [ "$a" = "--" ]; then side=100; elif [ $side = 200 ]; then h200+=("$a"); else h100+=("$a"); fi; done
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $name"
if echo "$name" | grep -q H200; then bash .s12/go.sh "$OUT" "${h200[@]}"; else bash .s12/go.sh "$OUT" "${h100[@]}"; fi
