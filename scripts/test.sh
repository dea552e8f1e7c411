#!/usr/bin/env bash
# Install everything the tests need (Debian tools + Python packages) and run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]     (CI: .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for pair in swaks:swaks msmtp:msmtp mutt:mutt mbsync:isync postconf:postfix dovecot:dovecot-imapd \
            pdftotext:poppler-utils opendkim:opendkim offlineimap:offlineimap \
            fetchmail:fetchmail openssl:openssl chromium:chromium chromedriver:chromium-driver \
            thunderbird:thunderbird; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# Packages found by name, not by command: Dovecot's LMTP for the baseline, and the Perl modules
# swaks needs for STARTTLS/implicit TLS and AUTH (--no-install-recommends leaves them out).
# python3-venv: a stock Debian 12 has python3 (3.11) but not its venv/ensurepip.
for pkg in python3 python3-venv dovecot-lmtpd libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl libdigest-hmac-perl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

source scripts/venv.sh
ensure_venv test   # pip runs only when setup.cfg/pyproject.toml changed (ESAM_REINSTALL=1 forces it)
.venv/bin/python -c 'import esam_mail, pytest'  # fails here if the install did not work
# The e2e corpus test reads the email samples of the Python's own test package (test.test_email);
# Debian ships that apart, in libpython3.X-testsuite.
if ! .venv/bin/python -c 'import test.test_email' 2>/dev/null; then
  read -r pyprefix pyver < <(.venv/bin/python -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2])')
  if [ "$pyprefix" = /usr ]; then
    echo "installing Debian package: libpython$pyver-testsuite"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "libpython$pyver-testsuite" >/dev/null
  fi
fi

# The PostgreSQL leg: unless ESAM_TEST_PG_URL is given, bring up a local server on a stock
# Debian 12 by itself: install the postgresql package, create a cluster if there is none, start
# it, and create (idempotently) a password role `esam_test` that may create databases and the
# database `test`.  Debian's default pg_hba.conf allows password (scram) logins on 127.0.0.1,
# so nothing is edited; a server set to `trust` works the same.  ESAM_TEST_PG=0 skips all this.
if [ -z "${ESAM_TEST_PG_URL:-}" ] && [ "${ESAM_TEST_PG:-1}" != 0 ]; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing PostgreSQL for the directory tests"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); else AS_PG=(sudo -u postgres); fi
  pgver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$pgver" ] || [ ! -d "/etc/postgresql/$pgver/main" ]; then
    pgver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    $SUDO pg_createcluster "$pgver" main >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$pgver" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  (cd / && "${AS_PG[@]}" psql -q -v ON_ERROR_STOP=1 -d postgres) <<'SQL'
SELECT 'CREATE ROLE esam_test LOGIN CREATEDB PASSWORD ''esam_test'''
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'esam_test') \gexec
SELECT 'CREATE DATABASE test OWNER esam_test'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'test') \gexec
SQL
  export ESAM_TEST_PG_URL="postgresql+asyncpg://esam_test:esam_test@127.0.0.1:5432/test"
fi

# Parallel workers (pytest-xdist): the tests mostly wait on sockets and subprocesses, so a
# few workers per core overlap the waiting.  Each worker has its own tmp dirs, PostgreSQL
# databases (esam_t_*/esam_tpl_*) and port-0 listeners; a module that shares one `esam`
# across its tests is an xdist_group and stays on one worker (--dist loadgroup).
# Tests marked `solo` (latency bounds, process races) run afterwards in one process, alone,
# so other workers' load cannot distort them.
# ESAM_TEST_WORKERS=0 runs everything in one process, in one go (use it with your own `-m`).
workers=${ESAM_TEST_WORKERS:-4}
if [ "$workers" = 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# A `-m EXPR` of the caller is combined with the phase's own selection.
args=(); mexpr=""
while [ $# -gt 0 ]; do
  case "$1" in
    -m) mexpr="$2"; shift 2 ;;
    -m*) mexpr="${1#-m}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
both() { if [ -n "$mexpr" ]; then echo "($mexpr) and $1"; else echo "$1"; fi; }
rc=0
.venv/bin/python -m pytest -n "$workers" --dist loadgroup -m "$(both 'not solo')" ${args[@]+"${args[@]}"} || rc=$?
solo=0
.venv/bin/python -m pytest -m "$(both solo)" ${args[@]+"${args[@]}"} || solo=$?
[ "$rc" = 5 ] && [ "$solo" = 0 ] && rc=0   # 5: nothing selected in that phase
[ "$solo" = 5 ] && solo=0
[ "$rc" != 0 ] && exit "$rc"
exit "$solo"
