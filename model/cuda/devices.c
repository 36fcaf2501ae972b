/* devices.c: peak dense bf16 tensor throughput of known GPUs, for MFU.
 *
 * Source: NVIDIA's datasheets (H100 Tensor Core GPU, H200 Tensor Core GPU,
 * A100 Tensor Core GPU, L40S), which print bf16 figures "with sparsity";
 * the dense peak is half of that. Matched on the name CUDA reports, most
 * specific first. An unknown GPU has no peak: MFU is then reported as
 * unknown rather than guessed. */
#include <string.h>
#include "gpt_cuda.h"

typedef struct {
    const char *match; /* substring of cudaDeviceProp.name */
    double tflops;     /* dense bf16 */
} peak_row;

static const peak_row PEAKS[] = {
    {"GH200", 989.4},     /* 1979 sparse */
    {"H100 NVL", 835.5},  /* 1671 sparse */
    {"H100 PCIe", 756.5}, /* 1513 sparse */
    {"H100", 989.4},      /* SXM5: 1979 sparse */
    {"H200 NVL", 835.5},  /* 1671 sparse */
    {"H200", 989.4},      /* SXM: 1979 sparse */
    {"A100", 312.0},      /* SXM4 and PCIe: 624 sparse */
    {"L40S", 362.05},     /* 733 sparse */
};

double gpt_cuda_peak_tflops(const char *device_name) {
    for (size_t i = 0; i < sizeof(PEAKS) / sizeof(PEAKS[0]); i++)
        if (strstr(device_name, PEAKS[i].match)) return PEAKS[i].tflops;
    return 0.0;
}

const char *gpt_cuda_peak_source(void) {
    return "NVIDIA datasheets' bf16 tensor figures with sparsity, halved";
}
