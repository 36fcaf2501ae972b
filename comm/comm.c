/* comm.c: MPI start-up and shutdown, this process's place in the world, and
 * the collectives of data-parallel training.
 * The local rank comes from a shared-memory split of the world so that it is
 * right under any launcher (mpirun, srun), not read from launcher-specific
 * environment variables. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"

static int comm_we_initialised;

comm_status comm_init(comm_ctx *ctx, comm_error_t err) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
            snprintf(err, COMM_ERRLEN, "MPI_Init failed");
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
    MPI_Comm_free(&node);
    return COMM_OK;
}

void comm_finalize(comm_ctx *ctx) {
    (void)ctx;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_we_initialised && !finalized) MPI_Finalize();
}

comm_status comm_allreduce_mean(float *buf, size_t n, comm_error_t err) {
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world == 1) return COMM_OK;
    const size_t piece = (size_t)1 << 28; /* counts are ints in MPI */
    for (size_t off = 0; off < n; off += piece) {
        int count = (int)(n - off < piece ? n - off : piece);
        if (MPI_Allreduce(MPI_IN_PLACE, buf + off, count, MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD) != MPI_SUCCESS) {
            snprintf(err, COMM_ERRLEN, "MPI_Allreduce of %d floats failed", count);
            return COMM_ERR;
        }
    }
    float inv = 1.0f / (float)world;
    for (size_t i = 0; i < n; i++) buf[i] *= inv;
    return COMM_OK;
}

double comm_mean_double(double v) {
    int world;
    double sum;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Allreduce(&v, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return sum / world;
}

double comm_sum_double(double v) {
    double sum;
    MPI_Allreduce(&v, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return sum;
}

int comm_max_int(int v) {
    int out;
    MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

int comm_argmax_int(int v) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    struct { int v, rank; } in = {v, rank}, out;
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    return out.rank;
}

int comm_all_equal(const void *buf, size_t bytes) {
    /* Rank 0's length first, so every rank joins the second broadcast with
     * the same count even when its own bytes differ in length. */
    unsigned long len = bytes;
    MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG, 0, MPI_COMM_WORLD);
    unsigned char *root = malloc(len ? len : 1);
    if (!root) return 0; /* out of memory for a few bytes: fail closed */
    memcpy(root, buf, len <= bytes ? len : bytes);
    MPI_Bcast(root, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
    int same = len == bytes && memcmp(root, buf, bytes) == 0;
    free(root);
    return comm_max_int(!same) == 0;
}
