#!/usr/bin/env bash
# go.sh OUT PART:LIMIT ... : runs each carried part in turn, tarring each part's output into OUT/PART.tgz
OUT=${1:?}; shift
for pl in "$@"; do
  p=${pl%%:*}; l=${pl##*:}
  mkdir -p /tmp/o/$p
  echo "== $(date -u +%T) part $p limit $l"
  s=$(date +%s)
  LIMIT_S=$l timeout -k 5 $((l + 10)) bash .s14/$p/run.sh /tmp/o/$p > /tmp/o/$p/stdout.txt 2>&1
  echo "== $(date -u +%T) part $p rc=$? took $(( $(date +%s) - s )) s"
  tail -8 /tmp/o/$p/stdout.txt
  tar -C /tmp/o -czf $OUT/$p.tgz $p
done
nvidia-smi --query-gpu=name,temperature.gpu,power.draw --format=csv
