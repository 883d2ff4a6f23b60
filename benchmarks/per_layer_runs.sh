#!/usr/bin/env bash
# The per-layer evidence for issue 17 on a GPU: experiments/per_layer.toml (both methods: each
# layer alone with K calls per synchronize, and prefix differencing) run twice back to back in
# one call per batch size, then `runner compare` of the two runs. Runs the CUDA runner (./runner,
# or $RUNNER) from the repository root; leaves the run directories, console logs and the
# comparisons in DIR.
#
#   PRECISIONS="fp16 bf16" BATCHES="16 32" bash benchmarks/per_layer_runs.sh DIR [--set ...]
#
# Extra arguments are passed to every run (protocol overrides that shorten a run go here, and
# the notes name them). Each batch size's two runs alternate with nothing between them, so
# run-to-run differences are the GPU's and the protocol's, not a rebuild's or a reboot's.
set -uo pipefail
dir=${1:?usage: per_layer_runs.sh DIR [--set KEY=VALUE ...]}
shift
runner=${RUNNER:-./runner}
precisions=${PRECISIONS:-fp16 bf16}
batches=${BATCHES:-16 32}
runs=${RUNS:-a b}
mkdir -p "$dir"
list() { # "fp16 bf16" -> ["fp16","bf16"]
  local out="" x
  for x in $1; do out="$out${out:+,}\"$x\""; done
  echo "[$out]"
}
for b in $batches; do
  for r in $runs; do
    echo "== batch $b run $r: $(date -u +%FT%TZ)" | tee -a "$dir/summary.txt"
    "$runner" experiments/per_layer.toml --set "matrix.precision=$(list "$precisions")" \
      --set "matrix.batch_size=[$b]" "$@" --out "$dir/b$b-$r" >"$dir/b$b-$r.log" 2>&1
    echo "exit $?" | tee -a "$dir/summary.txt"
    # The reconciliation and the two methods, as the console printed them.
    grep -E "TOTAL|Σ|disagree|calls|prefix" "$dir/b$b-$r.log" | tail -40 >>"$dir/summary.txt"
  done
  read -ra pair <<<"$runs"
  if [ ${#pair[@]} -ge 2 ]; then
    "$runner" compare "$dir/b$b-${pair[0]}" "$dir/b$b-${pair[1]}" --threshold 3 >"$dir/compare-b$b.txt" 2>&1
    echo "compare b$b: exit $?" | tee -a "$dir/summary.txt"
  fi
done
