/* comm_nccl.c: the NCCL backend of the gradient collectives (see comm_nccl.h).
 *
 * Plain C against the CUDA runtime and NCCL C APIs: nothing here runs on the
 * device except NCCL's own kernels, so no nvcc is needed. Every CUDA and
 * NCCL return code is checked and turned into a one-line message; nothing
 * exits. Nothing here may wait on a peer without a limit, since a peer that
 * died or hangs would leave this rank waiting forever:
 *  - the MPI steps of set-up (agreeing on failures, comparing GPUs, sending
 *    the unique id) go through comm.h's collectives, under its watchdog;
 *  - the communicator is non-blocking (NCCL >= 2.14): a call that NCCL has
 *    to finish in the background, such as the set-up that connects to the
 *    peers, returns ncclInProgress, and `settle` polls it to an end, or
 *    aborts it past the timeout;
 *  - collectives return once enqueued, and comm_nccl_wait polls for their
 *    completion the same way. */
#include <mpi.h>
#include <nccl.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "comm_nccl.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "gptrain needs NCCL >= 2.14 (non-blocking communicators)"
#endif

/* Polling a call or collective still in progress: back to back for the
 * first SPIN_S (the wait is on the step's critical path, and most end
 * within microseconds), then with naps of a 32nd of the time waited, at
 * most NAP_MAX_S, as comm.c's watchdog does. A gap between two polls longer
 * than GAP_S means this process was not running (stopped, suspended by
 * Slurm, starved): that time is not counted against the peers. */
#define SPIN_S 1e-4
#define NAP_MAX_S 1e-3
#define GAP_S 1.0

struct comm_nccl {
    ncclComm_t comm; /* NULL once aborted */
    cudaStream_t stream;
    cudaEvent_t ev_in, ev_out; /* comm_nccl_after / comm_nccl_before */
    int rank, world, device;
    double timeout_s; /* for calls in progress; <= 0: no limit */
};

static comm_status fail(comm_error_t err, const char *file, int line, const char *call,
                        const char *what) {
    const char *base = strrchr(file, '/');
    snprintf(err, COMM_ERRLEN, "%s:%d: %s: %s", base ? base + 1 : file, line, call, what);
    return COMM_ERR;
}

/* cudaGetLastError clears the failure, so that a later, unrelated check of
 * the last error does not report it a second time. */
#define CUDA_TRY(call)                                                        \
    do {                                                                      \
        cudaError_t e_ = (call);                                              \
        if (e_ != cudaSuccess) {                                              \
            cudaGetLastError();                                               \
            return fail(err, __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
        }                                                                     \
    } while (0)

#define NCCL_TRY(call)                                                        \
    do {                                                                      \
        ncclResult_t r_ = (call);                                             \
        if (r_ != ncclSuccess)                                                \
            return fail(err, __FILE__, __LINE__, #call, ncclGetErrorString(r_)); \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The clock of one wait (see SPIN_S). */
typedef struct {
    double start, last;
} waiter;

static waiter wait_begin(void) {
    double t = now_s();
    return (waiter){t, t};
}

/* After a poll that found the work not done: the seconds waited so far,
 * having paused as long as that suggests. */
static double wait_tick(waiter *w) {
    double now = now_s();
    if (now - w->last > GAP_S) w->start += now - w->last;
    w->last = now;
    double waited = now - w->start;
    if (waited >= SPIN_S) {
        double nap = waited / 32 < NAP_MAX_S ? waited / 32 : NAP_MAX_S;
        nanosleep(&(struct timespec){0, (long)(nap * 1e9)}, NULL);
    }
    return waited;
}

/* Aborting frees the communicator and kills its kernels still on the
 * device, which a hung peer would otherwise keep spinning forever. */
static comm_status abort_comm(comm_nccl *c) {
    ncclCommAbort(c->comm);
    c->comm = NULL;
    return COMM_ERR;
}

/* NCCL's detail of its last failure; empty where a build has none. */
static const char *nccl_detail(void) {
    const char *s = ncclGetLastError(NULL);
    return s ? s : "";
}

/* Ends a call on the non-blocking communicator: r is what it returned.
 * While NCCL works on it in the background the state is ncclInProgress, and
 * NCCL allows no other call on the communicator until it has left that
 * state. A failure, or a call still in progress after the timeout (a peer
 * that never joined the set-up), aborts the communicator: it cannot be used
 * again, and its own threads stop waiting for the peer. */
static comm_status settle(comm_nccl *c, ncclResult_t r, const char *call, int line,
                          comm_error_t err) {
    waiter w = {0, 0};
    if (r == ncclInProgress) w = wait_begin(); /* the usual case reads no clock */
    while (r == ncclInProgress) {
        ncclResult_t q = ncclCommGetAsyncError(c->comm, &r);
        if (q != ncclSuccess) r = q;
        if (r != ncclInProgress) break;
        if (wait_tick(&w) > c->timeout_s && c->timeout_s > 0) {
            snprintf(err, COMM_ERRLEN, "comm_nccl.c:%d: %s: rank %d: not done after %g s "
                     "(a peer missing?); communicator aborted", line, call, c->rank,
                     c->timeout_s);
            return abort_comm(c);
        }
    }
    if (r == ncclSuccess) return COMM_OK;
    snprintf(err, COMM_ERRLEN, "comm_nccl.c:%d: %s: rank %d: %s (%s); communicator aborted",
             line, call, c->rank, ncclGetErrorString(r), nccl_detail());
    return abort_comm(c);
}

/* A call on the communicator, settled; for functions that return a
 * comm_status and have `err`. */
#define NCCL_SETTLE(c, call)                                                  \
    do {                                                                      \
        if (settle((c), (call), #call, __LINE__, err) != COMM_OK) return COMM_ERR; \
    } while (0)

/* Without a driver cudaGetDeviceCount fails and leaves count untouched. */
static int device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count;
}

int comm_nccl_available(void) { return device_count() > 0; }

/* This rank's part of init that needs no peer: its device. With a single
 * GPU visible the launcher has given each rank its own
 * (CUDA_VISIBLE_DEVICES); whether it really did is checked across ranks
 * afterwards (distinct_gpus). */
static comm_status local_setup(comm_nccl *c, int local_rank, comm_error_t err) {
    /* NCCL lets this variable override config.blocking. */
    const char *blocking = getenv("NCCL_COMM_BLOCKING");
    if (blocking && strcmp(blocking, "0") != 0) {
        snprintf(err, COMM_ERRLEN, "rank %d: NCCL_COMM_BLOCKING=%s would make NCCL's set-up "
                 "and collectives wait without a limit, out of the watchdog's reach "
                 "(--comm-timeout); unset it", c->rank, blocking);
        return COMM_ERR;
    }
    int count = device_count();
    c->device = local_rank < count ? local_rank : count == 1 ? 0 : -1;
    if (c->device < 0) {
        snprintf(err, COMM_ERRLEN, "rank %d: local rank %d but only %d GPUs visible",
                 c->rank, local_rank, count);
        return COMM_ERR;
    }
    CUDA_TRY(cudaSetDevice(c->device));
    return COMM_OK;
}

/* Rank 0 makes the unique id that names the communicator, once every rank
 * has its own GPU: making it starts NCCL's bootstrap root (a thread and a
 * listening socket) that lives until the peers have joined. */
static comm_status unique_id(comm_nccl *c, ncclUniqueId *id, comm_error_t err) {
    if (c->rank == 0) NCCL_TRY(ncclGetUniqueId(id));
    return COMM_OK;
}

/* The highest priority lets the scheduler start a reduction's kernels
 * between the compute kernels queued on the other streams instead of after
 * them; non-blocking keeps it from syncing with the legacy default stream. */
static comm_status create_stream(comm_nccl *c, comm_error_t err) {
    int least, greatest;
    CUDA_TRY(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_TRY(cudaStreamCreateWithPriority(&c->stream, cudaStreamNonBlocking, greatest));
    CUDA_TRY(cudaEventCreateWithFlags(&c->ev_in, cudaEventDisableTiming));
    CUDA_TRY(cudaEventCreateWithFlags(&c->ev_out, cudaEventDisableTiming));
    return COMM_OK;
}

/* 1 when any rank failed (bad != 0 on it). Every rank reaches each such
 * check whatever happened to it, so one rank's failure ends init on all of
 * them instead of leaving the rest blocked in the next collective; a rank
 * that never arrives is the watchdog's (comm.h). */
static int any_failed(int bad, int rank, comm_error_t err) {
    int any = comm_max_int(bad);
    if (any && !bad)
        snprintf(err, COMM_ERRLEN, "rank %d: NCCL setup failed on another rank", rank);
    return any;
}

/* Each rank's GPU UUID and host, so ranks that share a GPU are caught
 * before NCCL fails on them with a less helpful message. Collective; every
 * rank finds the same first pair, so all of them fail alike. */
typedef struct {
    unsigned char uuid[16];
    char host[MPI_MAX_PROCESSOR_NAME];
    int device;
} gpu_id;

static comm_status distinct_gpus(comm_nccl *c, comm_error_t err) {
    gpu_id mine;
    memset(&mine, 0, sizeof mine);
    struct cudaDeviceProp p;
    gpu_id *all = calloc((size_t)c->world, sizeof *all);
    int len = 0, bad = !all || cudaGetDeviceProperties(&p, c->device) != cudaSuccess;
    if (bad) {
        cudaGetLastError();
        snprintf(err, COMM_ERRLEN, "rank %d: cannot read the properties of GPU %d", c->rank,
                 c->device);
    }
    if (any_failed(bad, c->rank, err)) {
        free(all);
        return COMM_ERR;
    }
    memcpy(mine.uuid, p.uuid.bytes, sizeof mine.uuid);
    MPI_Get_processor_name(mine.host, &len);
    mine.device = c->device;
    comm_status st = comm_allgather_bytes(&mine, all, sizeof mine, err);
    for (int a = 0; !st && a < c->world; a++)
        for (int b = a + 1; !st && b < c->world; b++)
            if (!memcmp(all[a].uuid, all[b].uuid, sizeof mine.uuid)) {
                snprintf(err, COMM_ERRLEN, "ranks %d and %d both got GPU %d on host %s: more "
                         "ranks on a node than GPUs; start one rank per GPU", a, b,
                         all[a].device, all[a].host);
                st = COMM_ERR;
            }
    free(all);
    return st;
}

/* Non-blocking: NCCL connects to the peers in the background while settle
 * polls, so a peer that never joins costs the timeout, not a hang inside
 * NCCL. The handle exists from the call on (NULL if it failed at once). */
static comm_status init_comm(comm_nccl *c, ncclUniqueId id, comm_error_t err) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&c->comm, c->world, id, c->rank, &config);
    return settle(c, r, "ncclCommInitRankConfig", __LINE__, err);
}

comm_status comm_nccl_init(comm_nccl **out, int rank, int world, int local_rank,
                           double timeout_s, comm_error_t err) {
    *out = NULL;
    comm_nccl *c = malloc(sizeof *c);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int bad = 1;
    if (!c)
        snprintf(err, COMM_ERRLEN, "rank %d: out of memory for the NCCL state", rank);
    else {
        *c = (comm_nccl){.rank = rank, .world = world, .timeout_s = timeout_s};
        bad = local_setup(c, local_rank, err) != COMM_OK;
    }
    if (any_failed(bad, rank, err)) goto fail;
    /* Every rank reaches it, and all find the same pair. */
    if (distinct_gpus(c, err)) goto fail;
    if (any_failed(unique_id(c, &id, err) != COMM_OK, rank, err)) goto fail;
    comm_broadcast_bytes(&id, sizeof id);
    bad = init_comm(c, id, err) != COMM_OK;
    if (!bad) bad = create_stream(c, err) != COMM_OK;
    /* A rank whose NCCL set-up failed at once waits here while the others
     * wait for it inside theirs, up to timeout_s: its own watchdog must not
     * end the job before they arrive, or its error (the real one) would be
     * lost behind "rank N did not arrive". */
    const double mpi_limit = comm_get_timeout();
    if (bad && mpi_limit > 0 && timeout_s > 0) comm_set_timeout(mpi_limit + timeout_s);
    bad = any_failed(bad, rank, err);
    comm_set_timeout(mpi_limit);
    if (bad) goto fail;
    *out = c;
    return COMM_OK;
fail:
    comm_nccl_abort(c); /* a peer may have failed: no finalizing with it */
    comm_nccl_free(c);
    return COMM_ERR;
}

/* Per-thread device selection: a caller on another thread (a communication
 * thread) would otherwise enqueue against device 0. */
static comm_status usable(comm_nccl *c, comm_error_t err) {
    if (!c->comm) {
        snprintf(err, COMM_ERRLEN, "rank %d: NCCL communicator was aborted", c->rank);
        return COMM_ERR;
    }
    CUDA_TRY(cudaSetDevice(c->device));
    return COMM_OK;
}

static ncclDataType_t nccl_type(comm_nccl_type t) {
    return t == COMM_NCCL_BF16 ? ncclBfloat16 : ncclFloat;
}

static size_t type_size(comm_nccl_type t) { return t == COMM_NCCL_BF16 ? 2 : 4; }

int comm_nccl_device(const comm_nccl *c) { return c->device; }

comm_status comm_nccl_allreduce_mean(comm_nccl *c, void *buf, size_t n, comm_nccl_type t,
                                     comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    NCCL_SETTLE(c, ncclAllReduce(buf, buf, n, nccl_type(t), ncclAvg, c->comm, c->stream));
    return COMM_OK;
}

comm_status comm_nccl_reduce_scatter_mean(comm_nccl *c, const void *send, void *recv,
                                          size_t recv_count, comm_nccl_type t,
                                          comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    NCCL_SETTLE(c, ncclReduceScatter(send, recv, recv_count, nccl_type(t), ncclAvg, c->comm,
                                     c->stream));
    return COMM_OK;
}

/* One NCCL call per owning rank k with counts[k] > 0, grouped so that NCCL
 * runs them as one operation (a piece inside a single shard is a single
 * call): ncclReduce of buf's range onto k, or (gather) ncclBroadcast of k's
 * mine into buf's range. */
static comm_status per_owner(comm_nccl *c, int gather, const void *mine, void *buf,
                             const int *counts, const int *displs, comm_nccl_type t,
                             comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    NCCL_TRY(ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    for (int k = 0; k < c->world && r == ncclSuccess; k++) {
        if (counts[k] <= 0) continue;
        char *p = (char *)buf + (size_t)displs[k] * type_size(t);
        size_t n = (size_t)counts[k];
        r = gather ? ncclBroadcast(k == c->rank ? mine : p, p, n, nccl_type(t), k, c->comm,
                                 c->stream)
                 : ncclReduce(p, p, n, nccl_type(t), ncclAvg, k, c->comm, c->stream);
    }
    /* The calls inside a group only record their work; the group's end
     * hands it to NCCL (and may return ncclInProgress). */
    ncclResult_t end = ncclGroupEnd();
    return settle(c, r != ncclSuccess ? r : end,
                  gather ? "ncclBroadcast group" : "ncclReduce group", __LINE__, err);
}

comm_status comm_nccl_reduce_scatterv_mean(comm_nccl *c, void *buf, const int *counts,
                                           const int *displs, comm_nccl_type t,
                                           comm_error_t err) {
    return per_owner(c, 0, NULL, buf, counts, displs, t, err);
}

comm_status comm_nccl_allgatherv(comm_nccl *c, const void *mine, void *buf, const int *counts,
                                 const int *displs, comm_nccl_type t, comm_error_t err) {
    return per_owner(c, 1, mine, buf, counts, displs, t, err);
}

comm_status comm_nccl_allgather(comm_nccl *c, const void *send, void *recv, size_t send_count,
                                comm_nccl_type t, comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    NCCL_SETTLE(c, ncclAllGather(send, recv, send_count, nccl_type(t), c->comm, c->stream));
    return COMM_OK;
}

comm_status comm_nccl_broadcast(comm_nccl *c, void *buf, size_t n, comm_nccl_type t, int root,
                                comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    NCCL_SETTLE(c, ncclBroadcast(buf, buf, n, nccl_type(t), root, c->comm, c->stream));
    return COMM_OK;
}

comm_status comm_nccl_mark_new(comm_nccl *c, void **mark, comm_error_t err) {
    cudaEvent_t e = NULL;
    *mark = NULL;
    CUDA_TRY(cudaSetDevice(c->device));
    CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *mark = e;
    return COMM_OK;
}

comm_status comm_nccl_mark(comm_nccl *c, void *mark, comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    CUDA_TRY(cudaEventRecord((cudaEvent_t)mark, c->stream));
    return COMM_OK;
}

comm_status comm_nccl_await(comm_nccl *c, void *mark, void *stream, comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    CUDA_TRY(cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)mark, 0));
    return COMM_OK;
}

void comm_nccl_mark_free(void *mark) {
    if (mark) cudaEventDestroy((cudaEvent_t)mark);
}

/* An event recorded on one stream and waited for by the other orders them
 * on the device; re-recording it later does not disturb a wait already
 * queued, so one event per direction is enough. */
comm_status comm_nccl_after(comm_nccl *c, void *stream, comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    CUDA_TRY(cudaEventRecord(c->ev_in, (cudaStream_t)stream));
    CUDA_TRY(cudaStreamWaitEvent(c->stream, c->ev_in, 0));
    return COMM_OK;
}

comm_status comm_nccl_before(comm_nccl *c, void *stream, comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    CUDA_TRY(cudaEventRecord(c->ev_out, c->stream));
    CUDA_TRY(cudaStreamWaitEvent((cudaStream_t)stream, c->ev_out, 0));
    return COMM_OK;
}

/* The limit counts from the moment the compute the collectives wait for
 * (ev_in, comm_nccl_after) is done: at ZeRO 2-3 the host waits here for a
 * whole backward pass, which no peer can be blamed for. */
comm_status comm_nccl_wait(comm_nccl *c, double timeout_s, const char *op, long step,
                           comm_error_t err) {
    if (usable(c, err) != COMM_OK) return COMM_ERR;
    waiter w = wait_begin();
    int computed = 0;
    for (;;) {
        cudaError_t q = cudaStreamQuery(c->stream);
        if (q == cudaSuccess) return COMM_OK;
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(c->comm, &async);
        /* In progress: a call's background work, which settle saw end
         * before any collective was enqueued; not expected, not an error. */
        if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
            snprintf(err, COMM_ERRLEN, "%s at step %ld: rank %d: NCCL error: %s (%s); "
                     "communicator aborted", op, step, c->rank,
                     ncclGetErrorString(r != ncclSuccess ? r : async), nccl_detail());
            return abort_comm(c);
        }
        if (q != cudaErrorNotReady) {
            cudaGetLastError();
            snprintf(err, COMM_ERRLEN, "%s at step %ld: rank %d: CUDA error: %s; "
                     "communicator aborted", op, step, c->rank, cudaGetErrorString(q));
            return abort_comm(c);
        }
        if (!computed && cudaEventQuery(c->ev_in) != cudaErrorNotReady) {
            cudaGetLastError();
            computed = 1;
            w = wait_begin();
        }
        if (wait_tick(&w) > timeout_s && timeout_s > 0 && computed) {
            snprintf(err, COMM_ERRLEN, "%s at step %ld: rank %d: not done %g s after the "
                     "compute it waits for (a peer missing?); communicator aborted", op, step,
                     c->rank, timeout_s);
            return abort_comm(c);
        }
    }
}

void comm_nccl_describe(char *out, size_t len) {
    int n = device_count(), driver = 0, runtime = 0, nccl = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    ncclGetVersion(&nccl);
    size_t k = (size_t)snprintf(out, len, "%d GPU%s", n, n == 1 ? "" : "s");
    for (int d = 0; d < n && k < len; d++) {
        struct cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) break;
        k += (size_t)snprintf(out + k, len - k, "%s%s (%.0f GiB)", d ? ", " : ": ", p.name,
                              p.totalGlobalMem / 1073741824.0);
    }
    cudaGetLastError();
    if (k < len && driver)
        k += (size_t)snprintf(out + k, len - k, "; driver for CUDA %d.%d", driver / 1000,
                              driver % 1000 / 10);
    else if (k < len)
        k += (size_t)snprintf(out + k, len - k, "; no CUDA driver");
    if (k < len)
        snprintf(out + k, len - k, "; CUDA runtime %d.%d; NCCL %d.%d.%d", runtime / 1000,
                 runtime % 1000 / 10, nccl / 10000, nccl % 10000 / 100, nccl % 100);
}

comm_status comm_nccl_alloc(comm_nccl *c, size_t n, float **dev, comm_error_t err) {
    *dev = NULL;
    CUDA_TRY(cudaSetDevice(c->device));
    CUDA_TRY(cudaMalloc((void **)dev, n * sizeof(float)));
    /* On NCCL's stream: a plain cudaMemset runs on the legacy stream, which
     * the non-blocking communication stream does not wait for. */
    CUDA_TRY(cudaMemsetAsync(*dev, 0, n * sizeof(float), c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return COMM_OK;
}

void comm_nccl_release(float *dev) {
    if (dev) cudaFree(dev);
}

void *comm_nccl_stream(comm_nccl *c) { return (void *)c->stream; }

void comm_nccl_abort(comm_nccl *c) {
    if (c && c->comm) abort_comm(c);
}

/* Finalizing waits for the peers to quiesce (in the background, bounded by
 * settle's timeout); then destroying frees the rest without blocking. A
 * communicator that fails or times out there is aborted by settle, and
 * the reason goes to stderr: no caller could do more with it at shutdown,
 * and a silent wait of up to the timeout would leave the user guessing. */
void comm_nccl_free(comm_nccl *c) {
    if (!c) return;
    comm_error_t why;
    if (c->comm) {
        if (settle(c, ncclCommFinalize(c->comm), "ncclCommFinalize", __LINE__, why) == COMM_OK)
            ncclCommDestroy(c->comm);
        else
            fprintf(stderr, "gptrain: closing NCCL: %s\n", why);
    }
    if (c->ev_in) cudaEventDestroy(c->ev_in);
    if (c->ev_out) cudaEventDestroy(c->ev_out);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}
