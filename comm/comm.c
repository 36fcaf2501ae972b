/* comm.c: MPI start-up and shutdown, this process's place in the world, and
 * the collectives of data-parallel training, each under the watchdog.
 * The local rank comes from a shared-memory split of the world so that it is
 * right under any launcher (mpirun, srun), not read from launcher-specific
 * environment variables.
 * Watchdog: a collective is started non-blocking and polled with MPI_Test,
 * since a blocking MPI call cannot be interrupted; past the timeout the rank
 * aborts the job. To name who is missing, the ranks of a host share a board
 * in node-shared memory where each counts the collectives it has entered;
 * a rank stuck in its k-th collective reads which peers have not reached k,
 * with no message to a peer that may be dead or stopped. */
#include <errno.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "comm.h"
#include "comm_internal.h"

/* Below this wait MPI_Test is polled back to back; above it the rank naps
 * between polls, 1/32 of the time waited so far and at most 1 ms. A nap
 * overshoots by the kernel's timer slack (50 us by default), which is why
 * napping starts only once that is small beside the wait. */
#define COMM_SPIN_S 1e-3
#define COMM_NAP_MAX_S 1e-3
/* A gap between two polls this long means this process was not running
 * (stopped, or starved of CPU): that time does not count against the peers. */
#define COMM_GAP_S 1.0
#define COMM_WATCHDOG_EXIT 3

typedef struct {
    atomic_long entered; /* collectives this rank has started */
    int rank, pid;
} comm_slot;

static int comm_we_initialised;
static double comm_timeout_s = 600.0;
static long comm_step;
static MPI_Win comm_board_win = MPI_WIN_NULL;
static comm_slot *comm_board; /* one slot per rank of this host, or NULL */
static int comm_board_n, comm_board_me, comm_board_whole_world;
static double comm_waited_s; /* time spent in comm_wait while running */

/* Sets up the board over this host's ranks. Without it (one rank on the
 * host, or no shared-memory window) the watchdog still works and only its
 * message is vaguer, so a failure here is not an error. */
static void comm_board_init(MPI_Comm node, const comm_ctx *ctx) {
    if (ctx->local_world < 2) return;
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    MPI_Aint size = ctx->local_rank == 0 ? ctx->local_world * (MPI_Aint)sizeof(comm_slot) : 0;
    void *mine;
    if (MPI_Win_allocate_shared(size, sizeof(comm_slot), MPI_INFO_NULL, node, &mine,
                                &comm_board_win) != MPI_SUCCESS)
        return;
    MPI_Aint qsize;
    int disp;
    MPI_Win_shared_query(comm_board_win, 0, &qsize, &disp, &comm_board);
    comm_board_n = ctx->local_world;
    comm_board_me = ctx->local_rank;
    comm_board_whole_world = ctx->local_world == ctx->world;
    comm_slot *s = &comm_board[comm_board_me];
    atomic_init(&s->entered, 0);
    s->rank = ctx->rank;
    s->pid = (int)getpid();
    MPI_Barrier(node); /* every slot is filled before any rank can read one */
}

comm_status comm_init(comm_ctx *ctx, int threads, comm_error_t err) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* Open MPI's non-blocking allreduce (libnbc) reduces an in-place
         * buffer over a binomial tree, at half the speed of the blocking
         * allreduce on large buffers; Rabenseifner's algorithm (3) keeps up
         * with it. A value the user set wins; other MPIs ignore the name. */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
        /* Open MPI's MPI-IO (OMPIO) opens every file with a shared file
         * pointer component; its "sm" one guards the pointer with a POSIX
         * semaphore named after the file's basename alone, node-wide
         * (/dev/shm/sem.OMPIO_<name>). A rank killed inside MPI_File_open
         * can leave it taken, and every later open of a file of that name
         * on the node then waits forever: a job killed while saving step
         * N hung the next save of step N (tests/resume.sh). Checkpoints
         * never use shared file pointers; "lockedfile" guards with fcntl
         * locks, which die with their process. A value the user set wins. */
        setenv("OMPI_MCA_sharedfp", "^sm", 0);
        int provided;
        if (MPI_Init_thread(NULL, NULL, threads ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED,
                            &provided) != MPI_SUCCESS) {
            snprintf(err, COMM_ERRLEN, "MPI_Init_thread failed");
            return COMM_ERR;
        }
        comm_we_initialised = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &ctx->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ctx->world);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, ctx->rank,
                        MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &ctx->local_rank);
    MPI_Comm_size(node, &ctx->local_world);
    comm_board_init(node, ctx);
    MPI_Comm_free(&node);
    return COMM_OK;
}

void comm_finalize(comm_ctx *ctx) {
    (void)ctx;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (comm_board_win != MPI_WIN_NULL) MPI_Win_free(&comm_board_win);
    comm_board = NULL;
    if (comm_we_initialised) MPI_Finalize();
}

void comm_set_timeout(double seconds) { comm_timeout_s = seconds; }
double comm_get_timeout(void) { return comm_timeout_s; }

void comm_set_step(long step) { comm_step = step; }
long comm_get_step(void) { return comm_step; }

double comm_wait_seconds(void) { return comm_waited_s; }

/* ---- watchdog --------------------------------------------------------------- */

static double comm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "is stopped" or "has exited" for a process of this host that cannot take
 * part in a collective, NULL when it runs (or its state cannot be read). */
static const char *comm_proc_state(int pid) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return "has exited";
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    char state = p && p[1] == ' ' ? p[2] : '?';
    if (state == 'T' || state == 't') return "is stopped";
    if (state == 'Z' || state == 'X') return "has exited";
    return NULL;
}

/* Appends to out[0..len) without ever overrunning it. */
static void comm_append(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void comm_append(char *out, size_t len, const char *fmt, ...) {
    size_t used = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    if (used + 1 < len) vsnprintf(out + used, len - used, fmt, ap);
    va_end(ap);
}

/* Says who holds up the collective this rank waits in, as far as the board
 * shows: the ranks of this host that have not entered it, or that entered it
 * but have stopped or exited since. */
static void comm_stragglers(char *out, size_t len) {
    out[0] = '\0';
    if (!comm_board) {
        snprintf(out, len, "the other ranks did not all arrive");
        return;
    }
    long mine = atomic_load(&comm_board[comm_board_me].entered);
    for (int i = 0; i < comm_board_n; i++) {
        const comm_slot *s = &comm_board[i];
        int late = atomic_load(&s->entered) < mine;
        const char *state = i == comm_board_me ? NULL : comm_proc_state(s->pid);
        const char *sep = out[0] ? ", " : "";
        if (late && state)
            comm_append(out, len, "%srank %d did not arrive (its process %s)", sep, s->rank,
                        state);
        else if (late)
            comm_append(out, len, "%srank %d did not arrive", sep, s->rank);
        else if (state)
            comm_append(out, len, "%srank %d arrived but its process %s", sep, s->rank, state);
    }
    if (!out[0])
        snprintf(out, len, comm_board_whole_world ? "every rank arrived"
                                                  : "every rank on this host arrived");
    else if (!comm_board_whole_world)
        comm_append(out, len, " (ranks on other hosts not checked)");
}

static _Noreturn void comm_watchdog_abort(const char *op, size_t bytes) {
    int rank, len;
    char host[MPI_MAX_PROCESSOR_NAME], who[1024];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Get_processor_name(host, &len);
    comm_stragglers(who, sizeof who);
    fprintf(stderr, "gptrain: rank %d (host %s): collective %s (%zu bytes) at step %ld did "
            "not finish within %g s; %s; aborting the job\n", rank, host, op, bytes,
            comm_step, comm_timeout_s, who);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, COMM_WATCHDOG_EXIT);
    abort(); /* MPI_Abort does not return; this tells the compiler so */
}

/* Marks the start of a collective on the board; call before starting it. */
void comm_enter(void) {
    if (comm_board) atomic_fetch_add(&comm_board[comm_board_me].entered, 1);
}

/* Ends a collective that MPI_I<op> started with status rc into *req. A long
 * wait for a late peer costs no core, and a collective in flight loses only
 * a few percent to the naps. A rank that was stopped while waiting and is
 * woken by the job's abort does not blame its peers. */
comm_status comm_wait(int rc, MPI_Request *req, const char *op, size_t bytes,
                             comm_error_t err) {
    double start = comm_now(), last = start;
    while (rc == MPI_SUCCESS) {
        int done = 0;
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        /* A stop can end inside MPI_Test too, even the last one. */
        double now = comm_now();
        if (now - last > COMM_GAP_S) start += now - last;
        last = now;
        if (rc != MPI_SUCCESS || done) break;
        double waited = now - start;
        if (comm_timeout_s > 0 && waited > comm_timeout_s) comm_watchdog_abort(op, bytes);
        if (waited < COMM_SPIN_S) continue;
        double nap = waited / 32 < COMM_NAP_MAX_S ? waited / 32 : COMM_NAP_MAX_S;
        nanosleep(&(struct timespec){0, (long)(nap * 1e9)}, NULL);
    }
    comm_waited_s += comm_now() - start;
    if (rc == MPI_SUCCESS) return COMM_OK;
    snprintf(err, COMM_ERRLEN, "MPI %s of %zu bytes failed", op, bytes);
    return COMM_ERR;
}

/* The agreement collectives of a few bytes have no error path: MPI's default
 * handler aborts on a failure before they could see it. */
static void comm_small_allreduce(const void *in, void *out, MPI_Datatype type, MPI_Op op,
                                 size_t bytes) {
    MPI_Request req;
    comm_error_t err;
    comm_enter();
    int rc = MPI_Iallreduce(in, out, 1, type, op, MPI_COMM_WORLD, &req);
    (void)comm_wait(rc, &req, "allreduce", bytes, err);
}

void comm_broadcast_bytes(void *buf, size_t bytes) {
    MPI_Request req;
    comm_error_t err;
    comm_enter();
    int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    (void)comm_wait(rc, &req, "broadcast", bytes, err);
}

/* ---- collectives ------------------------------------------------------------ */

static float comm_inv_world(void) {
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    return 1.0f / (float)world;
}

comm_status comm_allreduce_mean(float *buf, size_t n, comm_error_t err) {
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world == 1) return COMM_OK;
    const size_t piece = (size_t)1 << 28; /* counts are ints in MPI */
    for (size_t off = 0; off < n; off += piece) {
        int count = (int)(n - off < piece ? n - off : piece);
        MPI_Request req;
        comm_enter();
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, count, MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD, &req);
        if (comm_wait(rc, &req, "allreduce", count * sizeof(float), err)) return COMM_ERR;
    }
    float inv = comm_inv_world();
    for (size_t i = 0; i < n; i++) buf[i] *= inv;
    return COMM_OK;
}

comm_status comm_reduce_scatter_mean(float *buf, const int *counts, comm_error_t err) {
    int world, rank;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    size_t total = 0;
    for (int r = 0; r < world; r++) total += (size_t)counts[r];
    MPI_Request req;
    comm_enter();
    int rc = MPI_Ireduce_scatter(MPI_IN_PLACE, buf, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                 &req);
    if (comm_wait(rc, &req, "reduce_scatter", total * sizeof(float), err)) return COMM_ERR;
    float inv = comm_inv_world();
    for (int i = 0; i < counts[rank]; i++) buf[i] *= inv;
    return COMM_OK;
}

comm_status comm_allgather(float *buf, const int *counts, const int *displs,
                           comm_error_t err) {
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    size_t total = 0;
    for (int r = 0; r < world; r++) total += (size_t)counts[r];
    MPI_Request req;
    comm_enter();
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs,
                             MPI_FLOAT, MPI_COMM_WORLD, &req);
    return comm_wait(rc, &req, "allgather", total * sizeof(float), err);
}

comm_status comm_broadcast(float *buf, size_t n, int root, comm_error_t err) {
    const size_t piece = (size_t)1 << 28; /* counts are ints in MPI */
    for (size_t off = 0; off < n; off += piece) {
        int count = (int)(n - off < piece ? n - off : piece);
        MPI_Request req;
        comm_enter();
        int rc = MPI_Ibcast(buf + off, count, MPI_FLOAT, root, MPI_COMM_WORLD, &req);
        if (comm_wait(rc, &req, "broadcast", count * sizeof(float), err)) return COMM_ERR;
    }
    return COMM_OK;
}

comm_status comm_allgather_bytes(const void *mine, void *all, size_t bytes, comm_error_t err) {
    MPI_Request req;
    comm_enter();
    int rc = MPI_Iallgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD,
                            &req);
    return comm_wait(rc, &req, "allgather (bytes)", bytes, err);
}

void comm_barrier(void) {
    MPI_Request req;
    comm_error_t err;
    comm_enter();
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    (void)comm_wait(rc, &req, "barrier", 0, err);
}

double comm_mean_double(double v) {
    int world;
    double sum;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    comm_small_allreduce(&v, &sum, MPI_DOUBLE, MPI_SUM, sizeof v);
    return sum / world;
}

double comm_sum_double(double v) {
    double sum;
    comm_small_allreduce(&v, &sum, MPI_DOUBLE, MPI_SUM, sizeof v);
    return sum;
}

double comm_max_double(double v) {
    double out;
    comm_small_allreduce(&v, &out, MPI_DOUBLE, MPI_MAX, sizeof v);
    return out;
}

int comm_max_int(int v) {
    int out;
    comm_small_allreduce(&v, &out, MPI_INT, MPI_MAX, sizeof v);
    return out;
}

int comm_argmax_int(int v) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    struct { int v, rank; } in = {v, rank}, out;
    comm_small_allreduce(&in, &out, MPI_2INT, MPI_MAXLOC, sizeof in);
    return out.rank;
}

int comm_all_equal(const void *buf, size_t bytes) {
    /* Rank 0's length first, so every rank joins the second broadcast with
     * the same count even when its own bytes differ in length. */
    unsigned long len = bytes;
    comm_broadcast_bytes(&len, sizeof len);
    unsigned char *root = malloc(len ? len : 1);
    if (!root) return 0; /* out of memory for a few bytes: fail closed */
    memcpy(root, buf, len <= bytes ? len : bytes);
    comm_broadcast_bytes(root, len);
    int same = len == bytes && memcmp(root, buf, bytes) == 0;
    free(root);
    return comm_max_int(!same) == 0;
}
