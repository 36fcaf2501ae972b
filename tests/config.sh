# config.sh: --config FILE. Keys set flags (dashes or underscores), flags on
# the command line override the file, the effective config lands in
# RUN_DIR/config.toml, first in metrics.jsonl and in every checkpoint, and
# training again from RUN_DIR/config.toml repeats the run bit for bit. Bad
# files get one line naming FILE:LINE and exit 2; ranks whose config files
# differ stop.   usage: config.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=2
make_corpus
cat >"$tmp/run.toml" <<TOML
# a small run
data = "$tmp/data"
run-dir = "$tmp/a"
model = "d2"
batch = 4
seq = 32
steps = 30            # overridden below
val_every = 0
lr = 2e-3
save-every = 4
quiet = true
TOML
"$GPTRAIN" train --config "$tmp/run.toml" --steps 8 || fail "train --config"
[ "$(losses "$tmp/a/metrics.jsonl" | wc -l)" -eq 8 ] || fail "--steps 8 did not override the file"
grep -qx 'lr = 0.002' "$tmp/a/config.toml" || fail "config.toml: $(cat "$tmp/a/config.toml")"
grep -qx 'steps = 8' "$tmp/a/config.toml" || fail "config.toml has not the effective steps"
grep -q '^config' "$tmp/a/config.toml" && fail "config.toml names --config"
head -1 "$tmp/a/metrics.jsonl" | grep -q '"event":"config".*"save_every":4,.*"lr":0.002,' ||
    fail "metrics config record: $(head -1 "$tmp/a/metrics.jsonl")"
h5dump -a /train/config "$tmp/a/ckpt_00000008.h5" | grep -q 'save-every = 4' ||
    fail "the checkpoint holds no config"
pass

"$GPTRAIN" train --config "$tmp/run.toml" --steps 9 --dry-run >"$tmp/dry" || fail "--dry-run"
grep -qx 'steps = 9' "$tmp/dry" && grep -q '^resolved config' "$tmp/dry" ||
    fail "--dry-run does not print the resolved config: $(cat "$tmp/dry")"
pass

# The effective config is a config file: the same run again, bit for bit.
"$GPTRAIN" train --config "$tmp/a/config.toml" --run-dir "$tmp/b" || fail "train from config.toml"
cmp -s <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/b/metrics.jsonl") ||
    fail "the run from config.toml differs"
pass

bad() { # FILE-CONTENT EXPECTED-MESSAGE
    printf '%s\n' "$1" >"$tmp/bad.toml"
    local rc=0
    "$GPTRAIN" train --config "$tmp/bad.toml" --dry-run >/dev/null 2>"$tmp/err" || rc=$?
    [ $rc -eq 2 ] || fail "'$1': exit $rc, want 2"
    head -1 "$tmp/err" | grep -qF "$tmp/bad.toml:$2" || fail "'$1': $(head -1 "$tmp/err")"
}
bad 'bogus = 3' "1: unknown key 'bogus'"
bad $'# ok\nsteps = 3x' "2: invalid value '3x' for --steps"
bad $'[train]\nsteps = 3' "1: sections like [train] are not supported"
bad 'quiet = yes' "1: 'quiet' wants true or false"
bad 'data = "abc' "1: unterminated string"
bad 'steps' "1: expected key = value"
bad 'config = "x.toml"' "1: unknown key 'config'"
rc=0; "$GPTRAIN" train --config "$tmp/nosuch.toml" 2>"$tmp/err" || rc=$?
[ $rc -eq 2 ] && grep -q "cannot open config file $tmp/nosuch.toml" "$tmp/err" ||
    fail "missing config file: exit $rc"
pass

if [ -n "${MPIEXEC:-}" ]; then
    sed 's/^lr = .*/lr = 3e-3/' "$tmp/run.toml" >"$tmp/other.toml"
    rc=0
    "$MPIEXEC" --oversubscribe --bind-to none -np 1 "$GPTRAIN" train --config "$tmp/run.toml" : \
        -np 1 "$GPTRAIN" train --config "$tmp/other.toml" </dev/null >/dev/null 2>"$tmp/err" || rc=$?
    [ $rc -eq 2 ] && grep -q 'different settings' "$tmp/err" ||
        fail "ranks with different config files: exit $rc: $(cat "$tmp/err")"
    pass
fi
echo "config: $checks checks passed"
