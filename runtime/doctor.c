/* doctor.c: `gptrain doctor`, a preflight for a new cluster or allocation,
 * run under the same launcher and profile as training. It reports the MPI
 * world (hosts and ranks per host), each host's GPUs and NCCL, the profile
 * and the effective network variables, an allreduce bandwidth sweep (MPI,
 * and NCCL where there are GPUs), the checkpoint directory's write and read
 * speed and whether every host sees the same directory, and the clock skew
 * between hosts. Each check prints PASS, FAIL or INFO; any FAIL makes the
 * exit code 1. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "runtime.h"
#ifdef GPTRAIN_HAVE_NCCL
#include "comm_nccl.h"
#endif

#define HOSTLEN 128
#define INFOLEN 512

/* What each rank says of its place: a host is what MPI calls a node (the
 * ranks that share memory), named by its first rank's host name. */
typedef struct {
    char name[HOSTLEN];
    int local_rank, local_world;
} place;

typedef struct {
    comm_ctx c;
    const char *dir;
    long io_mb;
    float max_skew_ms;
    int failed, speak;
    place *hosts; /* one per rank */
} doctor;

static void verdict(doctor *d, int ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verdict(doctor *d, int ok, const char *what, const char *fmt, ...) {
    if (!ok) d->failed++;
    if (!d->speak) return;
    va_list ap;
    va_start(ap, fmt);
    printf("%-5s %-22s ", ok > 0 ? "PASS" : ok < 0 ? "INFO" : "FAIL", what);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

static double wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Hosts and ranks per host. */
static rt_status world(doctor *d, rt_error_t err) {
    place me = {.local_rank = d->c.local_rank, .local_world = d->c.local_world};
    gethostname(me.name, sizeof me.name - 1);
    comm_error_t cerr;
    d->hosts = calloc((size_t)d->c.world, sizeof(place));
    if (!d->hosts || comm_allgather_bytes(&me, d->hosts, sizeof me, cerr)) {
        snprintf(err, RT_ERRLEN, "gathering host names: %s", d->hosts ? cerr : "out of memory");
        return RT_ERR_RUN;
    }
    int nhosts = 0;
    char line[INFOLEN] = "";
    for (int r = 0; r < d->c.world; r++) {
        if (d->hosts[r].local_rank) continue;
        size_t k = strlen(line);
        nhosts++;
        snprintf(line + k, sizeof line - k, "%s%s (%d)", k ? ", " : "", d->hosts[r].name,
                 d->hosts[r].local_world);
    }
    verdict(d, -1, "world", "%d rank%s on %d host%s: %s", d->c.world, d->c.world == 1 ? "" : "s",
            nhosts, nhosts == 1 ? "" : "s", line);
    return RT_OK;
}

/* Each host's GPUs, from its local rank 0; enough GPUs for its ranks. */
static rt_status gpus(doctor *d, rt_error_t err) {
    char mine[INFOLEN] = "";
#ifdef GPTRAIN_HAVE_NCCL
    comm_nccl_describe(mine, sizeof mine);
#else
    snprintf(mine, sizeof mine, "0 GPUs (this gptrain was built without CUDA)");
#endif
    int have = atoi(mine), short_of = have > 0 && have < d->c.local_world;
    char *all = calloc((size_t)d->c.world, INFOLEN);
    comm_error_t cerr;
    if (!all || comm_allgather_bytes(mine, all, INFOLEN, cerr)) {
        free(all);
        snprintf(err, RT_ERRLEN, "gathering GPU reports: %s", cerr);
        return RT_ERR_RUN;
    }
    int bad = comm_max_int(short_of);
    for (int r = 0; r < d->c.world; r++)
        if (!d->hosts[r].local_rank)
            verdict(d, -1, "gpus", "%s: %s", d->hosts[r].name, all + (size_t)r * INFOLEN);
    if (bad) verdict(d, 0, "gpus per host", "a host has fewer GPUs than ranks (one GPU per rank)");
    free(all);
    return RT_OK;
}

static rt_status bandwidth(doctor *d, rt_error_t err) {
    if (d->speak) printf("INFO  allreduce, MPI        (busbw: nccl-tests' bus bandwidth)\n");
    rt_status st = rt_commbench_sweep(&d->c, 0, 1 << 20, 64 << 20, 5, err);
    /* Every rank or none: the sweep is collective, and a rank without a GPU
     * would run MPI's while the others set up NCCL. */
    if (!st && !comm_max_int(!rt_commbench_gpus())) {
        if (d->speak) printf("INFO  allreduce, NCCL\n");
        st = rt_commbench_sweep(&d->c, 1, 1 << 20, 256 << 20, 10, err);
    }
    if (!st) verdict(d, 1, "allreduce", "every rank took part in every size");
    return st;
}

/* Writes then reads io_mb MB per rank in dir; times are the slowest rank's. */
static void speed(doctor *d, const char *path) {
    size_t n = (size_t)d->io_mb << 20;
    char *buf = malloc(n);
    int bad = !buf;
    double t0 = wall_ms();
    int fd = bad ? -1 : open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    bad = bad || fd < 0;
    if (!bad) {
        memset(buf, 0x5a, n);
        bad = write(fd, buf, n) != (ssize_t)n || fsync(fd) != 0;
    }
    if (fd >= 0) close(fd);
    double tw = comm_max_double(wall_ms() - t0);
    t0 = wall_ms();
    fd = bad ? -1 : open(path, O_RDONLY);
    bad = bad || fd < 0 || read(fd, buf, n) != (ssize_t)n;
    if (fd >= 0) close(fd);
    double tr = comm_max_double(wall_ms() - t0);
    unlink(path);
    free(buf);
    double mb = (double)d->io_mb * d->c.world;
    if (comm_max_int(bad)) verdict(d, 0, "checkpoint dir write", "%s: a rank could not write "
                                   "and read back %ld MB", d->dir, d->io_mb);
    else verdict(d, 1, "checkpoint dir speed", "%s: write %.0f MB/s, read %.0f MB/s (all ranks "
                 "at once, %ld MB each, fsync'd; reads may come from the page cache)", d->dir,
                 mb / (tw / 1e3), mb / (tr / 1e3), d->io_mb);
}

/* Rank 0 writes a token; every rank reads it back: one shared directory? */
static void shared(doctor *d) {
    char path[4096], token[64], got[64] = "";
    snprintf(path, sizeof path, "%s/.gptrain_doctor_token", d->dir);
    snprintf(token, sizeof token, "%ld-%d", (long)time(NULL), (int)getpid());
    if (d->c.rank == 0) {
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(token, f);
            fclose(f);
        }
    }
    comm_barrier();
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(got, sizeof got, f)) got[0] = '\0';
        fclose(f);
    }
    /* Rank 0 reads its own token, and everyone reads what rank 0 read. */
    int missing = comm_max_int(d->c.rank == 0 && strcmp(got, token) != 0) ||
                  !comm_all_equal(got, sizeof got);
    comm_barrier();
    if (d->c.rank == 0) unlink(path);
    verdict(d, !missing, "checkpoint dir shared", missing ? "%s: some ranks do not see rank 0's "
            "files there; parallel checkpoints need one directory all hosts share" :
            "%s: every rank sees the same directory", d->dir);
}

static void skew(doctor *d) {
    comm_barrier();
    double now = wall_ms();
    double hi = comm_max_double(now), lo = -comm_max_double(-now);
    verdict(d, hi - lo <= d->max_skew_ms, "clock skew", "%.1f ms between the earliest and the "
            "latest rank's clock right after a barrier (limit %.0f ms)", hi - lo, d->max_skew_ms);
}

int rt_cmd_doctor(int argc, char **argv) {
    doctor d = {.dir = "runs", .io_mb = 64, .max_skew_ms = 1000};
    const char *profile = "";
    rt_flag flags[] = {
        {"ckpt-dir", RT_STR, &d.dir, "the directory checkpoints will go to"},
        {"io-mb", RT_LONG, &d.io_mb, "MB each rank writes and reads there"},
        {"max-skew-ms", RT_FLOAT, &d.max_skew_ms, "largest clock skew that passes"},
        {"profile", RT_STR, &profile, "cluster profile, as for train"},
    };
    int npos, rc = rt_parse_command("doctor", "usage: mpirun -np P gptrain doctor [flags]", argc,
                                    argv, flags, 4, NULL, 0, &npos);
    if (rc >= 0) return rc;
    rt_error_t err;
    rt_profile prof;
    if (rt_profile_apply(profile, &prof, err)) return rt_fail("doctor", RT_ERR_USAGE, err);
    if (d.io_mb < 1) return rt_fail("doctor", RT_ERR_USAGE, "--io-mb must be at least 1");
    comm_error_t cerr;
    if (comm_init(&d.c, 0, cerr)) return rt_fail("doctor", RT_ERR_RUN, cerr);
    d.speak = d.c.rank == 0;
    if (d.speak) {
        printf("gptrain doctor %s\n", GPTRAIN_VERSION);
        rt_profile_log(&prof, stdout);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/.gptrain_doctor_%d", d.dir, d.c.rank);
    rt_status st = world(&d, err);
    if (!st) st = gpus(&d, err);
    if (!st) st = bandwidth(&d, err);
    if (!st) {
        int nodir = comm_max_int(rt_mkdirs(d.dir, err) != RT_OK);
        if (nodir) verdict(&d, 0, "checkpoint dir", "%s cannot be created on some rank", d.dir);
        else {
            speed(&d, path);
            shared(&d);
        }
        skew(&d);
    }
    if (!st && d.speak)
        printf("%s\n", d.failed ? "doctor: some checks FAILED" : "doctor: all checks passed");
    free(d.hosts);
    comm_finalize(&d.c);
    if (st) return rt_fail("doctor", st, err);
    return d.failed ? 1 : 0;
}
