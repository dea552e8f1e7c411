#!/usr/bin/env bash
# Install everything the tests need (Debian tools + Python packages) and run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]     (CI: .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for pair in swaks:swaks msmtp:msmtp mutt:mutt mbsync:isync postconf:postfix dovecot:dovecot-imapd \
            pdftotext:poppler-utils opendkim:opendkim offlineimap:offlineimap \
            fetchmail:fetchmail openssl:openssl chromium:chromium chromedriver:chromium-driver; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# Packages found by name, not by command: Dovecot's LMTP for the baseline, and the Perl modules
# swaks needs for STARTTLS/implicit TLS and AUTH (--no-install-recommends leaves them out).
for pkg in dovecot-lmtpd libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl libdigest-hmac-perl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v 'is ignored: it is neither' || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v 'is ignored: it is neither' || true
.venv/bin/python -c 'import esam_mail, pytest'  # fails here if the install did not work

# The PostgreSQL leg of the directory tests: use the local server when it answers.
if [ -z "${ESAM_TEST_PG_URL:-}" ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    export ESAM_TEST_PG_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
  fi
fi

exec .venv/bin/python -m pytest "$@"
