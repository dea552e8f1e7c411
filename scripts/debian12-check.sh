#!/usr/bin/env bash
# A fresh-clone check on a stock Debian 12: does `bash scripts/test.sh` pass, PostgreSQL leg
# included, on a machine that has nothing but Debian 12 itself?  NOT part of the test suite
# (it builds a whole system and runs the whole suite in it: ~45 min on the shared 2-core machine).
#
# Usage (as root, on a Debian/Ubuntu host):
#     bash scripts/debian12-check.sh [REPO [BRANCH]]      REPO defaults to this checkout, BRANCH to main
#                                                         (or DEB12_REPO, DEB12_BRANCH)
#     bash scripts/debian12-check.sh --again [PYTEST ARGS]  re-run in the last run's root (packages,
#         venv and PostgreSQL already there), after updating its clone to BRANCH's tip: for
#         chasing one failure (e.g. `--again tests/e2e/test_x.py -k name`); not a fresh check;
#         output in $DEB12_ROOT/again.log
#
# What it does, each run the same (idempotent):
#   1. installs debootstrap and slirp4netns on the host if missing;
#   2. builds, once, a pristine Debian 12 root with `debootstrap --variant=minbase` plus
#      ca-certificates and git (what a user needs to clone) in $DEB12_ROOT/base
#      (default /var/tmp/deb12/base); kept for later runs, rebuilt if it is not a bookworm root.
#      minbase is the Debian container image's set: no python3, no procps, no sudo, no locales,
#      no PostgreSQL: scripts/test.sh has to install everything itself;
#   3. copies it afresh to $DEB12_ROOT/run (so every run starts stock), with the installer's
#      apt sources (bookworm, -updates, -security), /etc/hosts and hostname;
#   4. runs, in new network/mount/pid/uts namespaces: loopback up, slirp4netns for the way out
#      (the host's own loopback services such as its PostgreSQL are NOT reachable), /proc,
#      /dev, /dev/pts, /dev/shm and /sys mounted in the root, this repository bind-mounted
#      read-only at /src/esam_mail, and inside the chroot, with a login's clean environment:
#          git clone --branch BRANCH /src/esam_mail /root/esam_mail
#          cd /root/esam_mail && ESAM_REQUIRE_PG=1 bash scripts/test.sh
#   5. prints the cloned commit, pytest's closing lines, and the wall time of test.sh; the
#      whole output is in $DEB12_ROOT/last.log.  Exit status: test.sh's.
#
# Only where the host's own network needs it (a TLS-inspecting proxy), the host's local CAs
# (/usr/local/share/ca-certificates) are added to the copy's trust store and pip is told to
# use that store; nothing else of the host goes in.  Everything lives in private namespaces:
# when the run ends, its processes (PostgreSQL included) and mounts go with it.
set -euo pipefail

main() {
[ "$(id -u)" = 0 ] || { echo "debian12-check: run as root (debootstrap, chroot, namespaces)" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
again=0 pyargs=()
if [ "${1:-}" = --again ]; then again=1; shift; pyargs=("$@"); set --; fi
# the repository's git folder (a worktree's .git is only a pointer to it)
REPO=$(git -C "${1:-${DEB12_REPO:-$here}}" rev-parse --path-format=absolute --git-common-dir)
BRANCH=${2:-${DEB12_BRANCH:-main}}
ROOT=${DEB12_ROOT:-/var/tmp/deb12}
MIRROR=${DEB12_MIRROR:-http://deb.debian.org/debian}
BASE=$ROOT/base RUN=$ROOT/run LOG=$ROOT/last.log
mkdir -p "$ROOT"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. the pristine root, built once
if ! grep -q '^12\.' "$BASE/etc/debian_version" 2>/dev/null || [ ! -x "$BASE/usr/bin/git" ]; then
  echo "debian12-check: debootstrap bookworm into $BASE"
  rm -rf "$BASE.tmp" "$BASE"
  debootstrap --variant=minbase --include=ca-certificates,git bookworm "$BASE.tmp" "$MIRROR" > "$ROOT/debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT/debootstrap.log" >&2; exit 1; }
  cat > "$BASE.tmp/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tdeb12\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$BASE.tmp/etc/hosts"
  echo deb12 > "$BASE.tmp/etc/hostname"
  rm -f "$BASE.tmp/var/cache/apt/archives/"*.deb
  mv "$BASE.tmp" "$BASE"
fi

# 3. a fresh copy for this run (a mount left by a killed run only lived in its namespace)
pipcert=""
compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null && pipcert="PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
if [ "$again" = 0 ]; then
  rm -rf "$RUN"
  cp -a "$BASE" "$RUN"
  echo "nameserver 10.0.2.3" > "$RUN/etc/resolv.conf"   # slirp4netns's DNS forwarder
  if [ -n "$pipcert" ]; then
    cp /usr/local/share/ca-certificates/*.crt "$RUN/usr/local/share/ca-certificates/"
    chroot "$RUN" update-ca-certificates >/dev/null 2>&1
  fi
  mkdir -p "$RUN/src/esam_mail"
  cat > "$RUN/root/debian12-run.sh" <<'EOS'
set -eu
git config --global --add safe.directory "*"
git clone -q --branch "$BRANCH" /src/esam_mail /root/esam_mail
cd /root/esam_mail
echo "debian12-check: commit $(git log -1 --format="%h %cI %s" | cut -c1-100)"
t0=$(date +%s); rc=0
ESAM_REQUIRE_PG=1 bash scripts/test.sh || rc=$?
echo "debian12-check: $(.venv/bin/python --version 2>&1) (Debian python3.11 $(dpkg-query -W -f='${Version}' python3.11 2>/dev/null))"
echo "debian12-check: scripts/test.sh exit $rc, wall $(( $(date +%s) - t0 )) s"
exit $rc
EOS
else
  [ -d "$RUN/root/esam_mail/.git" ] || { echo "debian12-check: --again needs a previous run in $RUN" >&2; exit 2; }
  LOG=$ROOT/again.log
  { cat <<'EOS'
set -eu
cd /root/esam_mail
git fetch -q /src/esam_mail "$BRANCH" && git reset -q --hard FETCH_HEAD
echo "debian12-check (again): commit $(git log -1 --format="%h %cI %s" | cut -c1-100)"
t0=$(date +%s); rc=0
EOS
    printf 'ESAM_REQUIRE_PG=1 bash scripts/test.sh'; printf ' %q' ${pyargs[@]+"${pyargs[@]}"}; echo ' || rc=$?'
    echo 'echo "debian12-check: scripts/test.sh exit $rc, wall $(( $(date +%s) - t0 )) s"; exit $rc'
  } > "$RUN/root/debian12-run.sh"
fi

# 4. the run, in its own namespaces
inner=$(cat <<'EOS'
set -euo pipefail
R=$1 REPO=$2 BRANCH=$3 PIPCERT=$4
hostname deb12
ip link set lo up
for _ in $(seq 100); do [ -n "$(ip route show default)" ] && break; sleep 0.1; done
[ -n "$(ip route show default)" ] || { echo "debian12-check: slirp4netns gave no route" >&2; exit 1; }
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount --bind "$REPO" "$R/src/esam_mail"
mount -o remount,bind,ro "$R/src/esam_mail"
exec chroot "$R" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ${PIPCERT:+"$PIPCERT"} \
  BRANCH="$BRANCH" /bin/bash /root/debian12-run.sh
EOS
)
start=$(date -u +%FT%TZ)
echo "debian12-check: $start  repo $REPO ($BRANCH)  root $RUN  log $LOG"
unshare --net --mount --pid --uts --fork --kill-child --propagation private \
  bash -c "$inner" inner "$RUN" "$REPO" "$BRANCH" "$pipcert" > "$LOG" 2>&1 &
upid=$!
cpid=""
for _ in $(seq 100); do cpid=$(pgrep -P "$upid" | head -1) && [ -n "$cpid" ] && break; sleep 0.05; done
slirp4netns --configure --mtu=65520 --disable-host-loopback "$cpid" tap0 > "$ROOT/slirp4netns.log" 2>&1 &
spid=$!
rc=0; wait "$upid" || rc=$?
kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true

# 5. the summary
grep -E '^debian12-check:|^(=+ )?[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$LOG" || true
echo "debian12-check: started $start, exit $rc (full output: $LOG)"
return "$rc"
}

main "$@"   # the whole file is read before it runs: editing it during a run is harmless
