/* bf16_host.h: bf16 <-> float on the host for the tests that fill or read
 * device buffers of bf16 without CUDA code of their own. bf16 is the top
 * half of a float; rounding is to nearest even, as the device's. */
#ifndef BF16_HOST_H
#define BF16_HOST_H

#include <stdint.h>
#include <string.h>

static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
