#!/bin/bash
# Two esam_mail builds under the random-command stress at the same time, N rounds.
#
#   bench/same_time.sh ROUNDS TREE_A TREE_B [extra bench/run.py args]
#
# e.g. `git worktree add /tmp/old HEAD~1` and then `bench/same_time.sh 3 /tmp/old .`.
# A_ARGS / B_ARGS: bench/run.py arguments for one side only, e.g. one build with and
# without a setting: `B_ARGS="--set server.uvloop=true" bench/same_time.sh 3 . .`.
# Each round starts both benches (esam only: SMTP load, warm-up, stress) and a barrier makes
# their stresses start together, so both builds meet the same machine.  On a shared VM the
# same build varied 20-40 % between runs a few minutes apart; at the same time, two copies
# of one build differed by 2-8 % in commands/s and 2-3 % in CPU per command.  Prints each
# round's commands/s and server CPU ms per command for A and B.
set -euo pipefail
rounds=$1; a=$(realpath "$2"); b=$(realpath "$3"); shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
out=$(mktemp -d /tmp/esam-same-time.XXXXXX)
one() {  # name tree: this checkout's bench/run.py serving the tree's code
  ("$py" "$here/bench/run.py" --tree "$2" --quick --only esam --phases smtp,warmup,stress --stress-seconds 15 \
     --barrier "$out/barrier" --dir "/var/tmp/esam-same-time-$1" --no-write --json "$out/$1.json" "${@:3}" \
     > "$out/$1.log" 2>&1)
}
show() {
  "$py" - "$out/$1.json" "$1" <<'PY'
import json, sys
s = next(iter(json.load(open(sys.argv[1])).values()))[0]["stress"]  # {target: [round, ...]}
print(f"{sys.argv[2]}: {s['commands_per_s']:7.1f} cmds/s {s['cpu_ms_per_cmd']:.3f} ms CPU/cmd", end="   ")
PY
}
for r in $(seq 1 "$rounds"); do
  rm -f "$out"/barrier.*
  # shellcheck disable=SC2086  # word splitting of the per-side settings is wanted
  one A "$a" ${A_ARGS:-} "$@" & pa=$!
  # shellcheck disable=SC2086
  one B "$b" ${B_ARGS:-} "$@" & pb=$!
  wait "$pa" "$pb"
  echo -n "round $r  "; show A; show B; echo
done
echo "logs: $out"
