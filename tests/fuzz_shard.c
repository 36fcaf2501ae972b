/* fuzz_shard.c: libFuzzer harness for data_shard_open (data/shard.c).
 *
 * Shards come from disk, so the fuzzer's bytes are written to a file, which
 * is then opened like any shard; a file that passes validation has every
 * token read, so a header check that lets a short file through shows up as
 * an out-of-bounds read under ASan. Run it through the shared runner,
 *   bash tests/fuzz.sh . build/fuzz 60 fuzz_shard
 * or by hand:
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -Idata data/shard.c tests/fuzz_shard.c -o /tmp/fuzz_shard
 *   /tmp/fuzz_shard -max_total_time=60 CORPUS_DIR */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "data.h"

/* One file per process, rewritten by every run: creating a file per input
 * would spend most of the time in the file system. It is unlinked at once
 * and opened through /proc/self/fd, so no run, however it ends, leaves a
 * file behind in /tmp. */
static const char *input_file(int *fd_out)
{
    static char path[64];
    static int fd = -1;
    if (fd < 0) {
        char tmpl[] = "/tmp/fuzz_shard_XXXXXX";
        fd = mkstemp(tmpl);
        if (fd < 0) {
            perror("fuzz_shard: mkstemp");
            abort();
        }
        unlink(tmpl);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    *fd_out = fd;
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd;
    const char *path = input_file(&fd);
    if ((size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size) ||
        ftruncate(fd, (off_t)size) != 0) {
        perror("fuzz_shard: writing the input file");
        abort();
    }
    data_shard s;
    data_error_t err;
    if (data_shard_open(&s, path, err) != DATA_OK)
        return 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < s.ntok; i++)
        sum += data_shard_token(&s, i);
    /* Keeps the reads from being optimised away. */
    __asm__ volatile("" : : "r"(sum));
    data_shard_close(&s);
    return 0;
}
