# lib.sh: helpers shared by the shell tests (sourced, not run).
# A test calls `fail MSG` to stop with a message; `tmp` is removed on exit.
set -u
GPTRAIN=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
checks=0

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { checks=$((checks + 1)); }

# A small English corpus for training tests: a few fortunes files (from the
# Debian package the bootstrap installs), concatenated. GPTRAIN_FORTUNES names
# another copy of that folder (bench/gpu/env.sh sets it to the carried one on
# the GPU machine, which has no fortunes package).
make_corpus() {
    local f=${GPTRAIN_FORTUNES:-/usr/share/games/fortunes}
    [ -r "$f/computers" ] || fail "the fortunes corpus is missing from $f; run launch/bootstrap.sh"
    mkdir -p "$tmp/corpus"
    cp "$f/computers" "$f/science" "$tmp/corpus/"
    "$GPTRAIN" prep --quiet --vocab-size 512 --out "$tmp/data" "$tmp/corpus" >/dev/null ||
        fail "prep failed"
}

# Prints the "loss" values of the step lines of a metrics.jsonl.
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }

# end_job MPIRUN_PID [PID...]: kills mpirun (if the pid is not empty) and the
# processes, continuing a stopped one first so that it can die at once.
end_job() {
    local p
    [ -n "$1" ] && kill -9 $1 2>/dev/null
    shift
    for p in "$@"; do
        kill -CONT $p 2>/dev/null
        kill -9 $p 2>/dev/null
    done
}
