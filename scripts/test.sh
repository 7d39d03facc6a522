#!/usr/bin/env bash
# The project's test command: installs the SDKs the interop tests drive, then
# runs every test of the workspace, doctests included (--all-targets would skip
# them). Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-interop.sh
cargo test --workspace "$@"
