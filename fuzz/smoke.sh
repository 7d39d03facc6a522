#!/usr/bin/env bash
# Smoke run of every cargo-fuzz target: a short, fixed time each, starting from the committed
# seeds under corpus/<target>/. A crash, a panic or an input slower than 10 s fails the run and
# leaves the input under artifacts/<target>/ (replay: cargo fuzz run <target> <file>).
#
# cargo-fuzz builds with nightly-only rustc flags (-Zsanitizer=address and friends). The
# toolchain here is stable, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them; this is only
# for this separate, instrumented build (fuzz/ is its own workspace) and never for the product.
#
# FUZZ_SECONDS sets the time per target (default 20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

cargo fuzz build
for target in $(cargo fuzz list); do
    # libFuzzer writes new inputs into the first corpus directory: a scratch one, so the
    # committed seeds stay as they are.
    rm -rf "work/$target" "artifacts/$target"
    mkdir -p "work/$target"
    echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
    status=0
    cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 \
        >"work/$target.log" 2>&1 || status=$?
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "work/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "work/$target.log" >&2
        echo "fuzz: $target failed (exit $status); inputs in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
