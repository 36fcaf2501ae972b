/* commbench.c: `gptrain commbench`, the speed of the collectives at sizes
 * doubling from --min-bytes to --max-bytes, in the manner of nccl-tests'
 * all_reduce_perf (same table, same bandwidth definitions): over MPI on CPU
 * buffers, or (--backend nccl, in a build with CUDA) over NCCL on GPU
 * buffers. Every operation goes through the comm functions that training
 * calls, watchdog polling and the division of the mean included: the table
 * is what a training step pays. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "comm.h"
#include "runtime.h"
#ifdef GPTRAIN_HAVE_NCCL
#include "comm_nccl.h"
/* NCCL's set-up and each timed operation may take this long (the MPI
 * watchdog's default). */
#define BENCH_NCCL_TIMEOUT_S 600.0
#endif

typedef enum { BENCH_ALLREDUCE, BENCH_REDUCE_SCATTER, BENCH_ALLGATHER } bench_op;

typedef struct {
    bench_op op;
    long min_bytes, max_bytes, iters, warmup;
    comm_ctx comm;
    float *buf;           /* the whole buffer (reduce-scatter works in place) */
    int *counts, *displs; /* per rank, in floats */
    int nccl;             /* --backend nccl */
#ifdef GPTRAIN_HAVE_NCCL
    comm_nccl *nc;
    float *dev;           /* the whole buffer on the GPU */
#endif
} bench;

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static rt_status bench_check(bench *b, const char *op, const char *backend, rt_error_t err) {
    b->nccl = strcmp(backend, "nccl") == 0;
    if (!b->nccl && strcmp(backend, "mpi") != 0) {
        snprintf(err, RT_ERRLEN, "unknown --backend '%s' (mpi or nccl)", backend);
        return RT_ERR_USAGE;
    }
#ifndef GPTRAIN_HAVE_NCCL
    if (b->nccl) {
        snprintf(err, RT_ERRLEN, "--backend nccl: this gptrain was built without CUDA "
                 "(configure with -DGPTRAIN_CUDA=ON)");
        return RT_ERR_USAGE;
    }
#endif
    if (strcmp(op, "allreduce") == 0) b->op = BENCH_ALLREDUCE;
    else if (strcmp(op, "reduce_scatter") == 0) b->op = BENCH_REDUCE_SCATTER;
    else if (strcmp(op, "allgather") == 0) b->op = BENCH_ALLGATHER;
    else {
        snprintf(err, RT_ERRLEN, "unknown --op '%s' (allreduce, reduce_scatter or allgather)",
                 op);
        return RT_ERR_USAGE;
    }
    /* MPI counts are ints: the whole buffer is at most INT_MAX floats. */
    if (b->min_bytes < 4 || b->max_bytes < b->min_bytes ||
        b->max_bytes / 4 > (long)INT_MAX) {
        snprintf(err, RT_ERRLEN, "need 4 <= --min-bytes (%ld) <= --max-bytes (%ld) <= %ld",
                 b->min_bytes, b->max_bytes, (long)INT_MAX * 4);
        return RT_ERR_USAGE;
    }
    if (b->iters < 1 || b->warmup < 0) {
        snprintf(err, RT_ERRLEN, "need --iters >= 1 (%ld) and --warmup >= 0 (%ld)", b->iters,
                 b->warmup);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

/* Buffers for the largest size, every rank agreeing on whether they exist.
 * All ones: the mean of equal values is the value, so repeated operations
 * never drift into denormals. */
static rt_status bench_alloc(bench *b, rt_error_t err) {
    size_t n = (size_t)(b->max_bytes / 4), P = (size_t)b->comm.world;
    b->buf = malloc(n * sizeof(float));
    b->counts = malloc(P * sizeof(int));
    b->displs = malloc(P * sizeof(int));
    int ok = b->buf && b->counts && b->displs;
    if (comm_max_int(!ok)) {
        snprintf(err, RT_ERRLEN, "out of memory for %ld bytes of buffers (on some rank)",
                 b->max_bytes);
        return RT_ERR_RUN;
    }
    for (size_t i = 0; i < n; i++) b->buf[i] = 1.0f;
#ifdef GPTRAIN_HAVE_NCCL
    /* NCCL's init fails on every rank together; the allocation may not. */
    comm_error_t cerr;
    if (b->nccl && comm_nccl_init(&b->nc, b->comm.rank, P, b->comm.local_rank,
                                  BENCH_NCCL_TIMEOUT_S, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    int bad = b->nccl && comm_nccl_alloc(b->nc, n, &b->dev, cerr);
    if (comm_max_int(bad)) {
        snprintf(err, RT_ERRLEN, "%s", bad ? cerr : "another rank could not allocate its "
                 "GPU buffer");
        return RT_ERR_RUN;
    }
#endif
    return RT_OK;
}

#ifdef GPTRAIN_HAVE_NCCL
/* In place, as NCCL allows: each rank's block of the reduce-scatter lands
 * where it already is, and the allgather sends from there. */
static comm_status bench_once_nccl(bench *b, size_t count, comm_error_t err) {
    size_t per = count / (size_t)b->comm.world;
    float *mine = b->dev + (size_t)b->comm.rank * per;
    const comm_nccl_type f = COMM_NCCL_F32;
    comm_status st = b->op == BENCH_ALLREDUCE
                         ? comm_nccl_allreduce_mean(b->nc, b->dev, count, f, err)
                     : b->op == BENCH_REDUCE_SCATTER
                         ? comm_nccl_reduce_scatter_mean(b->nc, b->dev, mine, per, f, err)
                         : comm_nccl_allgather(b->nc, mine, b->dev, per, f, err);
    return st ? st : comm_nccl_wait(b->nc, BENCH_NCCL_TIMEOUT_S, "commbench", 0, err);
}
#endif

/* The floats one operation of `bytes` moves: the whole buffer, which
 * reduce-scatter and allgather split evenly, at least one float a rank. */
static size_t bench_count(bench *b, long bytes) {
    size_t n = (size_t)(bytes / 4), P = (size_t)b->comm.world;
    if (b->op == BENCH_ALLREDUCE) return n;
    size_t per = n / P ? n / P : 1;
    for (size_t r = 0; r < P; r++) {
        b->counts[r] = (int)per;
        b->displs[r] = (int)(r * per);
    }
    return per * P;
}

static comm_status bench_once(bench *b, size_t count, comm_error_t err) {
#ifdef GPTRAIN_HAVE_NCCL
    if (b->nccl) return bench_once_nccl(b, count, err);
#endif
    switch (b->op) {
    case BENCH_ALLREDUCE: return comm_allreduce_mean(b->buf, count, err);
    case BENCH_REDUCE_SCATTER: return comm_reduce_scatter_mean(b->buf, b->counts, err);
    case BENCH_ALLGATHER: return comm_allgather(b->buf, b->counts, b->displs, err);
    }
    return COMM_ERR;
}

/* Seconds per operation of the slowest rank, after warmup. The ranks start
 * the timed loop together, from a barrier. */
static rt_status bench_time(bench *b, size_t count, double *secs, rt_error_t err) {
    comm_error_t cerr;
    comm_status st = COMM_OK;
    for (long i = 0; i < b->warmup && !st; i++) st = bench_once(b, count, cerr);
    comm_barrier();
    double t0 = bench_now();
    for (long i = 0; i < b->iters && !st; i++) st = bench_once(b, count, cerr);
    double t = (bench_now() - t0) / b->iters;
    if (st) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    *secs = comm_max_double(t);
    return RT_OK;
}

static const char *const bench_names[] = {"allreduce", "reduce_scatter", "allgather"};

static rt_status bench_run(bench *b, rt_error_t err) {
    int P = b->comm.world, speak = b->comm.rank == 0;
    /* nccl-tests' bus bandwidth: what each link carries, comparable across
     * rank counts. */
    double factor = b->op == BENCH_ALLREDUCE ? 2.0 * (P - 1) / P : (double)(P - 1) / P;
    if (speak)
        printf("# gptrain commbench: %s of float32 over %d rank%s (%s), %ld iterations "
               "after %ld warmup\n# time: mean per operation of the slowest rank; algbw = "
               "size / time; busbw = algbw * %s (nccl-tests' definitions)\n"
               "# %12s %14s %12s %12s %12s\n", bench_names[b->op], P, P == 1 ? "" : "s",
               b->nccl ? "NCCL, GPU" : "MPI, CPU", b->iters, b->warmup,
               b->op == BENCH_ALLREDUCE ? "2(P-1)/P" : "(P-1)/P",
               "size(B)", "count(floats)", "time(us)", "algbw(GB/s)", "busbw(GB/s)");
    for (long bytes = b->min_bytes;; bytes *= 2) {
        size_t count = bench_count(b, bytes);
        double secs;
        rt_status st = bench_time(b, count, &secs, err);
        if (st) return st;
        double size = (double)count * sizeof(float), algbw = secs > 0 ? size / secs / 1e9 : 0;
        if (speak)
            printf("  %12.0f %14zu %12.2f %12.3f %12.3f\n", size, count, secs * 1e6, algbw,
                   algbw * factor);
        if (bytes > b->max_bytes / 2) break; /* the next size would pass the largest */
    }
    return RT_OK;
}

/* Allocates, sweeps and frees: the benchmark once MPI is up. */
static rt_status bench_go(bench *b, rt_error_t err) {
    rt_status st = bench_alloc(b, err);
    if (!st) st = bench_run(b, err);
    free(b->buf);
    free(b->counts);
    free(b->displs);
#ifdef GPTRAIN_HAVE_NCCL
    comm_nccl_release(b->dev);
    comm_nccl_free(b->nc);
#endif
    return st;
}

int rt_commbench_gpus(void) {
#ifdef GPTRAIN_HAVE_NCCL
    return comm_nccl_available();
#else
    return 0;
#endif
}

rt_status rt_commbench_sweep(const comm_ctx *ctx, int nccl, long min_bytes, long max_bytes,
                             long iters, rt_error_t err) {
    bench b = {.op = BENCH_ALLREDUCE, .min_bytes = min_bytes, .max_bytes = max_bytes,
               .iters = iters, .warmup = 2, .comm = *ctx, .nccl = nccl && rt_commbench_gpus()};
    return bench_go(&b, err);
}

int rt_cmd_commbench(int argc, char **argv) {
    bench b = {.min_bytes = 8, .max_bytes = 268435456, .iters = 20, .warmup = 5};
    const char *op = "allreduce", *backend = "mpi";
    rt_flag flags[] = {
        {"op", RT_STR, &op, "allreduce, reduce_scatter or allgather"},
        {"backend", RT_STR, &backend, "mpi (CPU buffers) or nccl (GPU buffers, one GPU per "
                                      "rank; needs a CUDA build)"},
        {"min-bytes", RT_LONG, &b.min_bytes, "smallest size (>= 4)"},
        {"max-bytes", RT_LONG, &b.max_bytes, "largest size; sizes double from the smallest"},
        {"iters", RT_LONG, &b.iters, "timed operations per size"},
        {"warmup", RT_LONG, &b.warmup, "untimed operations per size before them"},
    };
    int npos, rc = rt_parse_command("commbench", "usage: mpirun -np P gptrain commbench [flags]",
                                    argc, argv, flags, sizeof(flags) / sizeof(flags[0]), NULL,
                                    0, &npos);
    if (rc >= 0) return rc;
    rt_error_t err;
    rt_status st = bench_check(&b, op, backend, err);
    if (st) return rt_fail("commbench", st, err);
    comm_error_t cerr;
    if (comm_init(&b.comm, 0, cerr)) return rt_fail("commbench", RT_ERR_RUN, cerr);
    st = bench_go(&b, err);
    comm_finalize(&b.comm);
    return st ? rt_fail("commbench", st, err) : 0;
}
