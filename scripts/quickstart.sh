#!/usr/bin/env bash
# Install esam_mail into ./.venv and run it on the embedded defaults:
# SQLite directory and Maildir store under ./data, a self-signed TLS certificate,
# unprivileged ports (SMTP 2525, submission 2587/2465, IMAP 1143/1993, HTTP 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ] && ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
source scripts/venv.sh
ensure_venv ""   # pip runs only when setup.cfg/pyproject.toml changed (ESAM_REINSTALL=1 forces it)
.venv/bin/esam --version >/dev/null  # fails here if the install did not work
exec .venv/bin/esam -c conf/esam.toml serve "$@"
