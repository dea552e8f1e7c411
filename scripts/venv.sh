# Sourced by quickstart.sh and test.sh: make ./.venv and install esam_mail into it (editable),
# but only when the packaging metadata changed since the last install, so a restart with nothing
# changed takes seconds instead of a pip run.  ESAM_REINSTALL=1 forces the install.
#   ensure_venv ""       the server only
#   ensure_venv test     the server and the test tools
ensure_venv() {
  local extras=$1 spec=. stamp want py
  [ -n "$extras" ] && spec=".[$extras]"
  py=${PYTHON:-python3.11}
  command -v "$py" >/dev/null || py=python3
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
  stamp=".venv/.esam-installed${extras:+-$extras}"
  # a test install also serves the server-only flavour
  if [ "${ESAM_REINSTALL:-0}" != 1 ] && .venv/bin/python -c 'import esam_mail' 2>/dev/null; then
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] || { [ -z "$extras" ] && [ "$(cat .venv/.esam-installed-test 2>/dev/null)" = "$want" ]; }; then
      return 0
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v 'is ignored: it is neither' || true
  # the stamp only after pip succeeded (``import esam_mail`` alone also works from the source
  # folder, so a failed install would otherwise count as done and never be retried)
  local rc=0
  .venv/bin/python -m pip install -q -e "$spec" 2>&1 | { grep -v 'is ignored: it is neither' || true; }
  rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    rm -f "$stamp"
    echo "pip install -e '$spec' failed (exit $rc)" >&2
    return "$rc"
  fi
  .venv/bin/python -c 'import esam_mail' && echo "$want" > "$stamp"
}
