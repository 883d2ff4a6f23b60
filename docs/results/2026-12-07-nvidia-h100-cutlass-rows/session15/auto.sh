#!/usr/bin/env bash
# auto.sh OUT H200-PARTS -- H100-PARTS : picks the parts by the card this call got
OUT=${1:?}; shift
H200=(); H100=(); side=1
for a in "$@"; do if [ "$a" = "--" ]; then side=2; elif [ $side = 1 ]; then H200+=("$a"); else H100+=("$a"); fi; done
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $name"
if [[ "$name" == *H200* ]]; then bash .s14/go.sh $OUT "${H200[@]}"; else bash .s14/go.sh $OUT "${H100[@]}"; fi
