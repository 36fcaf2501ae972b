# multihost.sh: two network namespaces joined by a veth link stand in for
# two hosts. mpirun starts in one and launches the other's rank through an
# `ip netns exec` remote agent (Open MPI's plm_rsh_agent) instead of ssh,
# with the TCP transport only. Training on the two "hosts" gives the losses
# of a 2-rank single-host run, bit for bit; then the link is brought down
# mid-run: the collective watchdog ends every rank within the timeout + 10 s,
# each with its watchdog line (in per-rank output files: the far rank's
# output cannot cross the cut link), and mpirun exits non-zero once the link
# is back and it can reach the far daemon again. Skipped (exit 77), saying
# why, where network namespaces are not permitted.
#   usage: multihost.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
ns1=gpt$$a ns2=gpt$$b
if ! ip netns add $ns1 2>"$tmp/err"; then
    echo "multihost: skipped: network namespaces are not permitted here: $(head -1 "$tmp/err")"
    exit 77
fi
cleanup() {
    pkill -f -- "--run-dir $tmp/" 2>/dev/null
    ip netns del $ns1 2>/dev/null
    ip netns del $ns2 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add $ns2 || fail "ip netns add"
ip link add v$$a type veth peer name v$$b || fail "ip link add veth"
ip link set v$$a netns $ns1 && ip link set v$$b netns $ns2 || fail "moving the veth ends"
ip -n $ns1 addr add 10.77.0.1/24 dev v$$a && ip -n $ns2 addr add 10.77.0.2/24 dev v$$b ||
    fail "addresses"
for n in $ns1 $ns2; do ip -n $n link set lo up; done
ip -n $ns1 link set v$$a up && ip -n $ns2 link set v$$b up || fail "links up"
# Reachable: a connection to a closed port is refused at once (no ping here).
ip netns exec $ns1 timeout 3 bash -c 'exec 3<>/dev/tcp/10.77.0.2/9' 2>&1 | grep -q refused ||
    fail "the namespaces cannot reach each other"

# The remote agent: `agent HOST COMMAND...` runs COMMAND in HOST's namespace.
cat >"$tmp/agent" <<AGENT
#!/bin/sh
host=\$1; shift
case \$host in 10.77.0.1) ns=$ns1 ;; 10.77.0.2) ns=$ns2 ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec \$ns sh -c "\$*"
AGENT
chmod +x "$tmp/agent"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' >"$tmp/hosts"
export OMP_NUM_THREADS=1
make_corpus
args="--data $tmp/data --model d2 --seq 32 --batch 2 --steps 12 --warmup 2 --val-every 0 --quiet"
mpi_extra=
two_hosts() { # two_hosts COMMAND FLAGS...: a rank on each "host", TCP only; $mpi_extra: mpirun's
    ip netns exec $ns1 "$MPIEXEC" -np 2 --hostfile "$tmp/hosts" --bind-to none $mpi_extra \
        --mca plm_rsh_agent "$tmp/agent" --mca btl tcp,self \
        --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        -x OMP_NUM_THREADS -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM \
        "$GPTRAIN" "$@" </dev/null
}
"$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train $args --run-dir "$tmp/one" \
    </dev/null || fail "the single-host run failed"
timeout 120 bash -c "$(declare -f two_hosts); $(declare -p ns1 tmp MPIEXEC GPTRAIN args mpi_extra); two_hosts train $args --run-dir $tmp/two" \
    >"$tmp/out" 2>&1 || fail "the two-host run failed: $(tail -5 "$tmp/out")"
cmp -s <(losses "$tmp/one/metrics.jsonl") <(losses "$tmp/two/metrics.jsonl") ||
    fail "two hosts differ from one host: $(losses "$tmp/two/metrics.jsonl" | head -3)"
grep -q '"ranks":2' "$tmp/two/metrics.jsonl" || fail "not 2 ranks"
pass

# gptrain doctor sees two hosts that share the checkpoint directory.
timeout 120 bash -c "$(declare -f two_hosts); $(declare -p ns1 tmp MPIEXEC GPTRAIN mpi_extra); two_hosts doctor --ckpt-dir $tmp/ck --io-mb 8" \
    >"$tmp/doctor" 2>&1 || fail "doctor on two hosts: $(grep -m3 'FAIL\|error' "$tmp/doctor")"
grep -q "^INFO  world  *2 ranks on 2 hosts" "$tmp/doctor" || fail "doctor: $(grep world "$tmp/doctor")"
grep -q "^PASS  checkpoint dir shared" "$tmp/doctor" || fail "doctor: the shared directory"
pass

# The link goes down mid-run: the watchdog must end every rank.
args="${args/--steps 12/--steps 100000} --comm-timeout 4"
run_pids() { pgrep -f -- "--run-dir $tmp/cut" | while read -r p; do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = gptrain ] && echo $p; done; }
mpi_extra="--output-filename $tmp/ranks"
(timeout 120 bash -c "$(declare -f two_hosts); $(declare -p ns1 tmp MPIEXEC GPTRAIN args mpi_extra); two_hosts train $args --run-dir $tmp/cut" \
    >"$tmp/cut.out" 2>&1; echo $? >"$tmp/cut.rc") &
for i in $(seq 300); do
    [ "$(losses "$tmp/cut/metrics.jsonl" 2>/dev/null | wc -l)" -ge 5 ] && break
    sleep 0.1
done
[ "$(losses "$tmp/cut/metrics.jsonl" 2>/dev/null | wc -l)" -ge 5 ] || fail "the run did not start: $(tail -3 "$tmp/cut.out")"
start=$(date +%s)
ip -n $ns2 link set v$$b down
while [ -n "$(run_pids)" ] && [ $(( $(date +%s) - start )) -le 14 ]; do sleep 0.2; done
[ -z "$(run_pids)" ] || fail "ranks still running 14 s after the link went down"
secs=$(( $(date +%s) - start ))
for r in 0 1; do
    f=$(ls "$tmp"/ranks/*/rank.$r/stderr 2>/dev/null | head -1)
    grep -q "rank $r (host .*did not finish within 4 s" "$f" 2>/dev/null ||
        fail "rank $r printed no watchdog line: $(cat "$f" 2>/dev/null | head -2)"
done
ip -n $ns2 link set v$$b up
wait
rc=$(cat "$tmp/cut.rc")
[ "$rc" != 0 ] || fail "link down: mpirun exited 0"
echo "multihost: link down: both ranks ended by the watchdog within $secs s, mpirun exit $rc;" \
     "$(grep -h 'rank 1 (host' "$tmp"/ranks/*/rank.1/stderr | head -1)"
pass
echo "multihost: $checks passed, 0 failed"
