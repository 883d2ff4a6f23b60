#!/usr/bin/env bash
# Part tk2 (session 17; limit ~75 s): part tk again with branch s15 4d377c8 (128x96 a candidate): the models with tactics timed, graph = eager, and the picks
# stream-K (now reducing int32 atomically) and the unchecked 128x96 ping-pong among them, against the CPU and
# bit-equal to the rule's kernel at every shape, timed in CUDA graphs; NaN rows; the models with tactics timed.
# Prediction: 128x96 at 2048 x 3072 -> 768 ~0.8 of pp128c1rows' time (one wave of 3/4 tiles); stream-K still
# behind the data-parallel kernels (memset node + fixup), closer than the turnstile's 15.8 us on the H100.
set -uo pipefail
FINAL=${1:?usage: run.sh OUT}
W=/tmp/s17tk2; rm -rf $W; mkdir -p $W "$FINAL"
source .s14/unpack.sh
unpack cutlass_check
{ nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv; date -u; cat .s14/bin/BUILT; } >$W/steps.txt 2>&1
timeout -s KILL $(( ${LIMIT_S:-75} - 8 )) /tmp/s14/cutlass_check --tactics >$W/cutlass_check_tactics.txt 2>&1
echo "tactics exit $?; FAILED lines: $(grep -c FAILED $W/cutlass_check_tactics.txt)" >>$W/steps.txt
cp $W/* "$FINAL/"
grep -E "co128sk|x96c1|fastest here|FAILED" $W/cutlass_check_tactics.txt | grep -v "tactics picks" | cut -c1-140 | head -40
