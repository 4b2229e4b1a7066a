#!/usr/bin/env bash
# The project's test command: installs the test extras into .venv, and where they are missing and
# we may, Debian's redis-server and postgresql (the scale-out tests start both on loopback
# ports), ffmpeg (the upload tests encode their media with it), curl (the README's upload
# command is tested as written) and chromium (the browser tests drive it with Playwright); then
# lint, types and the tests (tests/unit/test_layers.py holds the import layers to the contracts in
# pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test,scale]'
.venv/bin/ruff check server tests loadtests
.venv/bin/mypy
.venv/bin/pytest "$@"
