#!/usr/bin/env bash
# Installs the real Centrifugo SDKs that the interop tests (tests/interop/) drive:
# centrifuge-python into tests/interop/python/.venv and centrifuge-js into
# tests/interop/js/node_modules, at the versions pinned there. Idempotent and
# quiet when both are already installed at those versions.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py_dir="$root/tests/interop/python"
js_dir="$root/tests/interop/js"

# apt-get update runs at most once, and only when something must be installed.
apt_updated=false
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "setup-interop: missing $*; install it (as root: apt-get install $*)" >&2
        exit 1
    fi
    if [ "$apt_updated" = false ]; then
        apt-get update -qq
        apt_updated=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- centrifuge-python ---------------------------------------------------------
venv="$py_dir/.venv"
# A copy of the requirements last installed: a changed pin reinstalls.
py_stamp="$venv/.installed-requirements.txt"
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c '' 2>/dev/null; then
    # The interpreter the venv was made from is gone.
    rm -rf "$venv"
fi
if ! cmp -s "$py_dir/requirements.txt" "$py_stamp"; then
    echo "setup-interop: installing centrifuge-python into $venv"
    command -v python3 >/dev/null || apt_install python3
    if [ ! -x "$venv/bin/python" ]; then
        # Debian's python3 has venv only with the python3-venv package.
        python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py_dir/requirements.txt"
    cp "$py_dir/requirements.txt" "$py_stamp"
fi

# --- centrifuge-js ---------------------------------------------------------------
# A copy of the lock file last installed: a changed lock reinstalls.
js_stamp="$js_dir/node_modules/.installed-package-lock.json"
if ! cmp -s "$js_dir/package-lock.json" "$js_stamp"; then
    echo "setup-interop: installing centrifuge-js into $js_dir/node_modules"
    command -v node >/dev/null || apt_install nodejs
    command -v npm >/dev/null || apt_install npm
    # --ignore-scripts: the SDK and ws need no install scripts.
    (cd "$js_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp "$js_dir/package-lock.json" "$js_stamp"
fi
