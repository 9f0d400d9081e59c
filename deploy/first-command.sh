#!/usr/bin/env bash
# The README's first command exactly as written there, as a newcomer runs it: in a fresh
# virtual environment (so without the dev extras), from the repository's top.
set -euo pipefail
cd "$(dirname "$0")/.."
command="$(grep -m1 -E '^pip install -e \. && ' README.md)"
[ -n "$command" ] || { echo "no 'pip install -e . && …' line in README.md" >&2; exit 1; }
venv="$(mktemp -d /tmp/partner-ca-newcomer-XXXXXX)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
echo "== the README's first command in a clean venv: $command"
if ! (. "$venv/bin/activate" && export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_QUIET=1 \
        && bash -c "$command" >"$venv/demo.log" 2>&1 && partner-ca --help >/dev/null); then
    echo "the README's first command failed in a clean venv:" >&2
    tail -n 20 "$venv/demo.log" >&2
    exit 1
fi
tail -n 1 "$venv/demo.log"
