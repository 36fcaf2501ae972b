# profiles.sh: every cluster profile in launch/profiles parses, both as
# gptrain reads it (a dry run with --profile, which logs what it applied)
# and as bash reads it (set -a; .); every setting has a source URL in the
# comment above it; a variable already in the environment wins over the
# profile; an unknown profile or a malformed line is one error line, exit 2.
#   usage: profiles.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
dir=$GPTRAIN_SRC/launch/profiles
make_corpus
n=0
for f in "$dir"/*.env; do
    name=$(basename "$f" .env)
    "$GPTRAIN" train --data "$tmp/data" --model d2 --dry-run --profile "$name" >"$tmp/out" 2>&1 ||
        fail "$name: $(head -2 "$tmp/out")"
    grep -q "^profile $name ($f): " "$tmp/out" || fail "$name: not logged: $(head -1 "$tmp/out")"
    (set -a; . "$f") || fail "$name: bash cannot source it"
    awk -v f="$name" '/^#/ { if ($0 ~ /https?:\/\//) src = 1; next }
        /^$/ { next }
        /^[A-Za-z_][A-Za-z0-9_]*=[^ ]*$/ { if (!src) { print f ": no source for " $0; bad = 1 } src = 0; next }
        { print f ": not NAME=value: " $0; bad = 1 }
        END { exit bad }' "$f" || fail "$name: malformed"
    n=$((n + 1))
done
[ $n -ge 6 ] || fail "only $n profiles"
pass
NCCL_DEBUG=INFO "$GPTRAIN" train --data "$tmp/data" --model d2 --dry-run --profile local \
    >"$tmp/out" 2>&1 || fail "local with NCCL_DEBUG set"
grep -q "NCCL_DEBUG=INFO (from the environment)" "$tmp/out" || fail "the environment did not win"
pass
printf 'GOOD=1\nnot a setting\n' >"$tmp/bad.env"
for p in nosuch "$tmp/bad.env"; do
    "$GPTRAIN" train --data "$tmp/data" --dry-run --profile "$p" >/dev/null 2>"$tmp/err"
    [ $? -eq 2 ] || fail "--profile $p: want exit 2"
done
grep -q "bad.env:2: not a NAME=value line" "$tmp/err" || fail "$(head -1 "$tmp/err")"
pass
echo "profiles: $n profiles; $checks passed, 0 failed"
