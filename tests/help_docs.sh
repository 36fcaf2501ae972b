# help_docs.sh: every flag that a subcommand's --help lists is documented:
# it appears as --flag in docs/ or the README, so the docs cannot fall
# behind the binary. Also: every subcommand in `gptrain --help` has --help.
#   usage: help_docs.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
SRC=${GPTRAIN_SRC:-$(dirname "$0")/..}
docs=("$SRC"/docs/*.md "$SRC"/README.md "$SRC"/launch/README.md)
cmds=$("$GPTRAIN" --help | awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
[ "$(echo "$cmds" | wc -w)" -ge 8 ] || fail "gptrain --help lists too few commands: $cmds"
missing=""
for c in $cmds; do
    "$GPTRAIN" "$c" --help >"$tmp/help" 2>&1 || fail "gptrain $c --help failed"
    grep -q "^usage: " "$tmp/help" || fail "gptrain $c --help has no usage line"
    for f in $(grep -oE '^  --[a-z0-9-]+' "$tmp/help" | sed 's/^  //'); do
        grep -qE -- "$f([^a-z0-9-]|\$)" "${docs[@]}" || missing="$missing $c:$f"
    done
    grep -qE "gptrain $c([^a-z]|\$)" "${docs[@]}" || missing="$missing $c(command)"
done
[ -z "$missing" ] || fail "flags in --help but not in docs/:$missing"
pass
echo "help_docs: $checks checks passed"
