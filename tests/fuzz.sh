# fuzz.sh: builds and runs libFuzzer harnesses for a fixed time each, so
# every parser of untrusted input gets the same treatment from one command.
#   usage: bash tests/fuzz.sh SRC_DIR BUILD_DIR SECONDS HARNESS...
# Harness NAME is SRC_DIR/tests/NAME.c, linked with every data/*.c except
# prep.c (which has dependencies of its own) under ASan and UBSan. Each runs
# for SECONDS from the corpus BUILD_DIR/NAME.corpus (kept between runs, so
# later runs start where earlier ones stopped); crash inputs are saved as
# BUILD_DIR/NAME-crash-*. Exits non-zero if a harness fails to build or
# finds a crash, a leak, undefined behaviour or a hang.
set -u -o pipefail

die() { echo "fuzz: $*" >&2; exit 2; }

[ $# -ge 4 ] || die "usage: bash tests/fuzz.sh SRC_DIR BUILD_DIR SECONDS HARNESS..."
src=$1 build=$2 seconds=$3
shift 3
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive integer, not '$seconds'"
[ -d "$src/data" ] || die "$src: not the source tree (no data/ directory)"
mkdir -p "$build" || die "$build: cannot create the build directory"

# libFuzzer ships with clang; check that it links before building anything.
command -v clang >/dev/null || die "clang not found; install it (launch/bootstrap.sh does)"
probe=$build/probe
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' \
    >"$probe.c"
clang -fsanitize=fuzzer "$probe.c" -o "$probe" >"$probe.log" 2>&1 ||
    die "clang cannot link libFuzzer (-fsanitize=fuzzer): $(head -1 "$probe.log")"
rm -f "$probe" "$probe.c" "$probe.log"

sources=()
for f in "$src"/data/*.c; do
    [ "$(basename "$f")" = prep.c ] || sources+=("$f")
done

# Seeds: a valid uint16 shard (magic 20240520, version 1, 3 tokens) and a
# valid uint32 one (magic 20240801, version 7, 2 tokens), little-endian.
seed_fuzz_shard() {
    { printf '\x88\xd8\x34\x01\x01\x00\x00\x00\x03\x00\x00\x00'
      head -c 1012 /dev/zero
      printf '\x01\x00\xff\xff\x00\x01'; } >"$1/seed_u16.bin"
    { printf '\xa1\xd9\x34\x01\x07\x00\x00\x00\x02\x00\x00\x00'
      head -c 1012 /dev/zero
      printf '\x01\x00\x01\x00\xff\xff\xff\xff'; } >"$1/seed_u32.bin"
}

export ASAN_OPTIONS=abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# Builds and runs one harness; prints one line; returns non-zero on failure.
fuzz_one() {
    local name=$1 exe=$build/$1 corpus=$build/$1.corpus log=$build/$1.log
    [ -f "$src/tests/$name.c" ] || { echo "$name: FAILED: no $src/tests/$name.c"; return 1; }
    if ! clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
        -I"$src/data" "${sources[@]}" "$src/tests/$name.c" -o "$exe" >"$log" 2>&1; then
        echo "$name: FAILED to build:"; tail -20 "$log"; return 1
    fi
    mkdir -p "$corpus"
    if declare -F "seed_$name" >/dev/null; then "seed_$name" "$corpus"; fi
    if ! "$exe" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$build/$name-" "$corpus" >"$log" 2>&1; then
        echo "$name: FAILED (log: $log):"; grep -m1 -A8 -E 'ERROR|runtime error|==' "$log"
        return 1
    fi
    local runs
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 execs in \2 s/p' "$log")
    echo "$name: ok (${runs:-no stats}, corpus of $(ls "$corpus" | wc -l) inputs)"
}

passed=0 failed=0
for name in "$@"; do
    if fuzz_one "$name"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
