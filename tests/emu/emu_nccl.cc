// emu_nccl.cc: NCCL for one rank, for gptrain_emu (tests/emu): what
// comm/comm_nccl.c calls, where every collective over a world of one is a
// copy (a sum or a mean of one value is that value, exactly). That is
// enough to run the NCCL paths of a one-rank training run on the CPU
// emulation: the buckets (GPTRAIN_FORCE_NCCL=1 at ZeRO 0-1) and the unit
// slots of ZeRO 2 and 3. Buffers must lie in device allocations and the
// communicator must have one rank; anything else is refused with a message
// for ncclGetLastError, as NCCL refuses bad arguments.
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "emu_internal.h"

struct ncclComm {
    int rank;
};

namespace {

char g_last[256];

ncclResult_t refuse(ncclResult_t r, const char *what) {
    snprintf(g_last, sizeof g_last, "emulated NCCL: %s", what);
    return r;
}

size_t type_bytes(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    default: return 8;
    }
}

// recv = send, count elements of type, both on the device.
ncclResult_t copy(const void *send, void *recv, size_t count, ncclDataType_t type,
                  ncclComm_t comm) {
    size_t bytes = count * type_bytes(type);
    if (!comm) return refuse(ncclInvalidArgument, "NULL communicator");
    if (bytes && (!emu::on_device(send, bytes) || !emu::on_device(recv, bytes)))
        return refuse(ncclInvalidArgument, "a buffer outside device memory");
    if (send != recv) memmove(recv, send, bytes);
    return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int *version) {
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t *config) {
    (void)id, (void)config;
    *comm = nullptr;
    if (nranks != 1 || rank != 0) return refuse(ncclInvalidUsage, "one rank only");
    *comm = new ncclComm{rank};
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *err) {
    (void)comm;
    *err = ncclSuccess;
    return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
    (void)comm;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
    return r == ncclSuccess ? "no error" : "refused by the emulated NCCL";
}

const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return g_last;
}

ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    (void)op, (void)stream;
    return copy(send, recv, count, type, comm);
}

ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                        ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream) {
    (void)op, (void)stream;
    if (root != 0) return refuse(ncclInvalidArgument, "root is not rank 0");
    return copy(send, recv, count, type, comm);
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream) {
    (void)stream;
    if (root != 0) return refuse(ncclInvalidArgument, "root is not rank 0");
    return copy(send, recv, count, type, comm);
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount,
                               ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream) {
    (void)op, (void)stream;
    return copy(send, recv, recvcount, type, comm);
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream) {
    (void)stream;
    return copy(send, recv, sendcount, type, comm);
}

}  // extern "C"
