# plot.sh: `gptrain plot` draws a real tiny run and a synthetic resumed run
# (a second config line, steps logged twice, other events, unknown keys,
# null losses) into one PNG and SVG: the SVG names both runs and every axis,
# and its axes show that the last record of a repeated step won. Bad input
# (a missing run, a malformed line, no step records, a record before the
# config) is one line naming the file and line, exit 2 and no output; a
# missing or failing gnuplot is exit 1 naming gnuplot-nox or gnuplot's error,
# with no output and no temporary files left. --help matches docs/plot.md.
#   usage: plot.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=2
command -v gnuplot >/dev/null || fail "gnuplot is missing; run launch/bootstrap.sh"
export TMPDIR=$tmp/tmpdir
mkdir -p "$TMPDIR"

make_corpus
"$GPTRAIN" train --data "$tmp/data" --model d2 --batch 4 --seq 32 --steps 24 --warmup 4 \
    --val-every 8 --val-batches 2 --quiet --run-dir "$tmp/tiny" || fail "training the tiny run"

# A resumed run: steps 1-8, then a restart from the step-4 checkpoint that
# logs 5-12 again. The first attempt's steps 5-8 (loss 900, 40 minutes each)
# and its val at step 8 must give way to the second attempt's (10 s each).
R=$tmp/resumed_run
mkdir -p "$R"
cfg='{"event":"config","n_layer":2,"batch":64,"seq":1024,"accum":2,"ranks":1,'
cfg+='"tokenizer":null,"shuffle":true,"profile":""}'
step() { # step N LOSS MS: a step record as train writes it, with a key it does not
    printf '{"step":%d,"loss":%s,"lr":0.001,"grad_norm":1.5,"ms":%s,"busy_ms":%s,' "$1" "$2" "$3" "$3"
    printf '"tokens":%d,"tflops":0.1,"mfu":0,"new_key":"caf\\u00e9 \\"x\\""}\n' $(($1 * 131072))
}
{
    echo "$cfg"
    echo '{"event":"val","step":0,"val_loss":5.5}'
    for i in 1 2 3 4; do step $i "4.$((9 - i))" 10000; done
    echo '{"event":"save","step":4,"path":"r/ckpt_00000004.h5","stall_ms":3.5}'
    for i in 5 6 7 8; do step $i 900 2400000; done
    echo '{"event":"val","step":8,"val_loss":900}'
    echo '{"event":"stop","step":8,"signal":15}'
    echo
    echo "$cfg"
    echo '{"event":"resume","step":4,"path":"r/ckpt_00000004.h5"}'
    for i in 5 6 7 8 9 10 11 12; do step $i "3.$((30 - i))" 10000; done
    echo '{"event":"skip","step":10,"reason":"loss spike","loss":null,"grad_norm":null}'
    step 13 null 10000
    echo '{"event":"val","step":8,"val_loss":3.9}'
    echo '{"event":"stragglers","step":10,"busy_ms_max":12.5,"slowest_host":"h"}'
    echo '{"event":"val","step":12,"val_loss":3.6}'
} > "$R/metrics.jsonl"

"$GPTRAIN" plot "$tmp/tiny" "$R/" > "$tmp/out" 2> "$tmp/err" || fail "plot: $(cat "$tmp/err")"
[ "$(cat "$tmp/out")" = "wrote $tmp/tiny/loss.png
wrote $tmp/tiny/loss.svg" ] || fail "plot printed: $(cat "$tmp/out")"
[ "$(head -c 8 "$tmp/tiny/loss.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    fail "loss.png is not a PNG"
pass
svg=$tmp/tiny/loss.svg
grep -q '^<svg' "$svg" || fail "loss.svg is not an SVG"
for label in 'tiny train' 'tiny val' 'resumed_run train' 'resumed_run val' '>tiny<' \
        '>resumed_run<' 'Loss by step' 'Loss by tokens seen' 'Throughput' 'step' \
        'loss (nats/token)' 'tokens seen' 'elapsed wall-clock time (minutes)' \
        'throughput (' 'tokens/s)'; do
    grep -qF -- "$label" "$svg" || fail "loss.svg lacks '$label'"
done
pass
[ -z "$(ls -A "$TMPDIR")" ] || fail "temporary files left: $(ls "$TMPDIR")"
ls "$tmp/tiny" | grep -q '\.tmp$' && fail "a .tmp output was left"
pass

"$GPTRAIN" plot "$R" --out "$tmp/plots/new/r" >/dev/null || fail "--out into a new directory"
[ -s "$tmp/plots/new/r.png" ] || fail "--out: no r.png"
svg=$tmp/plots/new/r.svg
grep -qF 'tokens seen (millions)' "$svg" && grep -qF 'throughput (thousand tokens/s)' "$svg" ||
    fail "r.svg: the tokens axes are not in millions and thousands"
# Every axis of this plot stays below 100 (loss < 6, steps <= 13, < 2 M
# tokens, 13.1 k tokens/s, 2.2 minutes) unless the stale records of the
# resumed run were kept: loss 900, 160 minutes.
ticks=$(grep -o '<text> *[0-9.]*</text>' "$svg" | grep -o '[0-9.][0-9.]*')
[ "$(echo "$ticks" | wc -l)" -ge 10 ] || fail "too few tick labels in r.svg: $ticks"
echo "$ticks" | awk '$1 >= 100 { bad = 1 } END { exit bad }' ||
    fail "a tick label >= 100: the stale records of the resumed run were drawn"
pass

# expect_fail RC NEEDLE ARGS...: plot ARGS --out $tmp/failed/plot exits RC
# with one error line holding NEEDLE and writes nothing.
expect_fail() {
    local want=$1 needle=$2; shift 2
    PATH=${plot_path:-$PATH} "$GPTRAIN" plot "$@" --out "$tmp/failed/plot" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    [ $rc -eq "$want" ] || fail "plot $*: exit $rc, want $want ($(head -1 "$tmp/err"))"
    head -1 "$tmp/err" | grep -qF -- "$needle" ||
        fail "plot $*: error line lacks '$needle': $(head -1 "$tmp/err")"
    [ "$(grep -vc '^usage: ' "$tmp/err")" -eq 1 ] || fail "plot $*: not one error line"
    [ ! -s "$tmp/out" ] || fail "plot $*: printed $(cat "$tmp/out")"
    [ -z "$(ls -A "$tmp/failed" 2>/dev/null)" ] || fail "plot $*: wrote $(ls "$tmp/failed")"
    [ -z "$(ls -A "$TMPDIR")" ] || fail "plot $*: temporary files left"
    pass
}
bad_run() { # bad_run NAME LINES...: a run directory whose metrics.jsonl holds LINES
    mkdir -p "$tmp/$1"
    local name=$1; shift
    printf '%s\n' "$@" > "$tmp/$name/metrics.jsonl"
}
good='{"step":1,"loss":4.2,"ms":10,"tokens":128}'
expect_fail 2 "$tmp/nowhere/metrics.jsonl: cannot open" "$tmp/tiny" "$tmp/nowhere"
bad_run cut "$cfg" "$good" '{"step":2,"loss":4.1,"ms":1'
expect_fail 2 "$tmp/cut/metrics.jsonl:3: column 28: expected ',' or '}' (the line ends there)" "$tmp/cut"
bad_run nan "$cfg" "$good" '{"step":2,"loss":nan,"ms":10}'
expect_fail 2 "$tmp/nan/metrics.jsonl:3: column 18: invalid value" "$tmp/nan"
bad_run nested "$cfg" '{"step":1,"loss":4.2,"ms":10,"x":[1]}'
expect_fail 2 "$tmp/nested/metrics.jsonl:2: column 34: nested" "$tmp/nested"
bad_run nostep "$cfg" '{"event":"val","step":0,"val_loss":5}'
expect_fail 2 "$tmp/nostep/metrics.jsonl: no step records" "$tmp/nostep"
bad_run noconfig "$good"
expect_fail 2 "$tmp/noconfig/metrics.jsonl:1: a record before the config record" "$tmp/noconfig"
bad_run noloss "$cfg" '{"step":1,"ms":10}'
expect_fail 2 "$tmp/noloss/metrics.jsonl:2: \"loss\" must be a number or null" "$tmp/noloss"
bad_run badstep "$cfg" '{"step":1.5,"loss":4,"ms":10}'
expect_fail 2 "$tmp/badstep/metrics.jsonl:2: \"step\" must be a whole number" "$tmp/badstep"
bad_run nobatch '{"event":"config","seq":32,"accum":1,"ranks":1}' "$good"
expect_fail 2 "$tmp/nobatch/metrics.jsonl:1: \"batch\" must be a number >= 1" "$tmp/nobatch"
expect_fail 2 "name at least one run directory"
expect_fail 2 "at most 10 run directories" $(for i in $(seq 11); do echo "$tmp/tiny"; done)

# No gnuplot on PATH; then a gnuplot that fails with a message.
plot_path=/nonexistent expect_fail 1 "install the Debian package gnuplot-nox" "$tmp/tiny"
mkdir -p "$tmp/fakebin"
printf '#!/bin/sh\necho "\\"plot.gp\\" line 2: something broke" >&2\nexit 1\n' > "$tmp/fakebin/gnuplot"
chmod +x "$tmp/fakebin/gnuplot"
plot_path=$tmp/fakebin:$PATH expect_fail 1 'gnuplot failed (exit 1): "plot.gp" line 2: something broke' \
    "$tmp/tiny"

"$GPTRAIN" plot --help > "$tmp/help" || fail "plot --help"
if [ -n "${GPTRAIN_SRC:-}" ]; then
    while IFS= read -r line; do
        grep -qxF -- "$line" "$GPTRAIN_SRC/docs/plot.md" || fail "docs/plot.md lacks: $line"
    done < <(grep -v '^$' "$tmp/help")
    pass
fi
echo "plot: $checks checks passed"
