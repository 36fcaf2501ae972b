# slurm.sh: the project's launch/slurm/train.sbatch under a real single-node
# Slurm (munged, slurmctld and slurmd from Debian, started as root under a
# temporary directory with their own ports and munge socket). A 2-task job
# is sent SIGUSR1 mid-run the way --signal=B:USR1 would: the ranks save and
# exit 4, the script requeues the job, the restarted job resumes from
# `latest` and finishes at the target step, and its losses after the stop
# equal an uninterrupted 2-rank run's bit for bit. Everything is torn down
# on exit, failed or not. If Slurm cannot start, the test fails and says why.
#   usage: slurm.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
for b in munged mungekey slurmctld slurmd sbatch scontrol squeue; do
    command -v $b >/dev/null || fail "$b is missing: install slurm-wlm and munge (launch/bootstrap.sh does)"
done
[ "$(id -u)" = 0 ] || fail "this test starts Slurm's daemons as root; run it as root"
export OMP_NUM_THREADS=1
chmod 755 "$tmp"
S=$tmp/slurm
mkdir -p "$S/state" "$S/spool" "$tmp/runs"
mkdir -m 0755 "$tmp/munge"
chown munge:munge "$tmp/munge"

# Stops the daemons (waiting until they are gone) and removes everything.
teardown() {
    [ -n "${SLURM_CONF:-}" ] && scancel --full --quiet -u root 2>/dev/null
    local f p i
    for f in "$S/slurmd.pid" "$S/slurmctld.pid" "$tmp/munge/munged.pid"; do
        p=$(cat "$f" 2>/dev/null) || continue
        kill "$p" 2>/dev/null
        for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    pkill -9 -f -- "$tmp/" 2>/dev/null
    rm -rf "$tmp"
}
trap teardown EXIT

mungekey --create --keyfile="$tmp/munge/munge.key" >/dev/null 2>&1 || fail "mungekey failed"
chown munge:munge "$tmp/munge/munge.key" && chmod 0400 "$tmp/munge/munge.key"
runuser -u munge -- munged --socket="$tmp/munge/munge.sock" --key-file="$tmp/munge/munge.key" \
    --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" \
    --seed-file="$tmp/munge/munged.seed" || fail "munged did not start: $(tail -2 "$tmp/munge/munged.log")"

cat >"$S/slurm.conf" <<CONF
ClusterName=gptraintest
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc --all) State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$S/slurm.conf
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start: $(tail -3 "$S/slurmctld.log" 2>/dev/null)"
slurmd -f "$SLURM_CONF" -N localhost || fail "slurmd did not start: $(tail -3 "$S/slurmd.log" 2>/dev/null)"
for i in $(seq 100); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 0.2
done
sinfo -h -o %t | grep -q idle || fail "the Slurm node is not idle: $(sinfo 2>&1 | tail -2); $(tail -3 "$S/slurmd.log")"
pass

make_corpus
N=150
args="--data $tmp/data --model d2 --seq 32 --batch 2 --steps $N --warmup 5 --val-every 0 --quiet"
"$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train $args --run-dir "$tmp/ref" \
    </dev/null || fail "the reference run failed"

job=$(cd "$tmp" && GPTRAIN=$GPTRAIN RUN_ROOT=$tmp/runs TRAIN_ARGS=$args OMP_NUM_THREADS=1 \
      GPTRAIN_PROFILE=$GPTRAIN_SRC/launch/profiles/local.env \
      sbatch --parsable --ntasks-per-node=2 --cpus-per-task=1 --overcommit \
      --output="$tmp/runs/job-%j.log" "$GPTRAIN_SRC/launch/slurm/train.sbatch") ||
    fail "sbatch refused the template"
run=$tmp/runs/job-$job
state() { scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
for i in $(seq 600); do
    [ "$(losses "$run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 10 ] && break
    case $(state) in FAILED|CANCELLED|TIMEOUT|NODE_FAIL|COMPLETED)
        fail "the job ended before the signal: $(state): $(tail -5 "$tmp/runs/job-$job.log")" ;; esac
    sleep 0.1
done
[ "$(losses "$run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 10 ] || fail "the job logged no steps: $(tail -5 "$tmp/runs/job-$job.log" 2>/dev/null)"
scancel --signal=USR1 --batch "$job" || fail "scancel --signal failed"
# Done: COMPLETED with the last step logged (a requeued job may look
# COMPLETED for a moment between its two runs). Slurm holds a requeued job
# back for a while (its BeginTime) before it runs again.
finished() { [ "$(state)" = COMPLETED ] && grep -q "\"step\":$N," "$run/metrics.jsonl"; }
for i in $(seq 1200); do
    finished && break
    case $(state) in FAILED|CANCELLED|TIMEOUT|NODE_FAIL)
        fail "the job ended $(state): $(tail -5 "$tmp/runs/job-$job.log")" ;; esac
    sleep 0.25
done
finished || fail "the job did not finish: $(state): $(tail -5 "$tmp/runs/job-$job.log")"
log=$tmp/runs/job-$job.log
grep -q "requeueing job $job" "$log" || fail "the job was not requeued: $(tail -5 "$log")"
grep -q "restart 1" "$log" || fail "no restarted run in the log"
grep -q '"profile":"[^"]*launch/profiles/local.env"' "$run/metrics.jsonl" ||
    fail "the profile did not reach the ranks"
k=$(grep -o '"event":"stop","step":[0-9]*' "$run/metrics.jsonl" | grep -o '[0-9]*$')
[ -n "$k" ] || fail "no stop event"
grep -q "\"event\":\"resume\",\"step\":$k" "$run/metrics.jsonl" || fail "no resume at step $k"
after() { losses "$1" | awk -F'[:,]' -v k=$k '$2 > k'; }
[ "$(after "$tmp/ref/metrics.jsonl" | wc -l)" -eq $((N - k)) ] || fail "reference losses"
cmp -s <(after "$tmp/ref/metrics.jsonl") <(after "$run/metrics.jsonl") ||
    fail "the requeued job's losses differ from the uninterrupted run (stopped after $k)"
echo "slurm: job $job stopped by SIGUSR1 after step $k, requeued, resumed and finished step $N"
pass
echo "slurm: $checks passed, 0 failed"
