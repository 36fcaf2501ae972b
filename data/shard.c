/* shard.c: writes and memory-maps llm.c token shards (data.h).
 *
 * A shard is a 1024-byte header of little-endian int32 (magic, version,
 * token count, zeros) followed by the uint16 tokens. Reading maps the file
 * instead of copying it, so the loader can walk corpora larger than memory,
 * and validates the header against the file size so that a truncated or
 * foreign file is rejected with a message rather than read out of bounds. */
#include "data.h"
#include "data_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The header and tokens are written in host order; the format is
 * little-endian, so a big-endian build would silently write foreign files. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the shard format is little-endian");

#define HEADER_BYTES (DATA_SHARD_HEADER_INTS * sizeof(int32_t))
/* llm.c's uint32-token shards (used for LLaMA 3 vocabularies). */
#define LLMC_U32_MAGIC 20240801
#define LLMC_U32_VERSION 7

data_status data_fail(char *err, data_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, DATA_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Writes the header and the tokens; the caller closes f. */
static data_status write_body(FILE *f, const char *path, const uint16_t *tokens,
                              size_t n, char *err)
{
    int32_t header[DATA_SHARD_HEADER_INTS] = {0};
    header[0] = DATA_SHARD_MAGIC;
    header[1] = DATA_SHARD_VERSION;
    header[2] = (int32_t)n;
    if (fwrite(header, sizeof header, 1, f) != 1)
        return data_fail(err, DATA_ERR_IO, "%s: cannot write the shard header: %s",
                    path, strerror(errno));
    if (n > 0 && fwrite(tokens, sizeof *tokens, n, f) != n)
        return data_fail(err, DATA_ERR_IO, "%s: cannot write %zu tokens: %s", path, n,
                    strerror(errno));
    return DATA_OK;
}

data_status data_shard_write(const char *path, const uint16_t *tokens, size_t n,
                             data_error_t err)
{
    if (n > INT32_MAX)
        return data_fail(err, DATA_ERR_ARG,
                    "%s: %zu tokens do not fit in one shard (at most %d)", path, n,
                    INT32_MAX);
    FILE *f = fopen(path, "wb");
    if (!f)
        return data_fail(err, DATA_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    data_status st = write_body(f, path, tokens, n, err);
    /* fclose flushes the buffered tail, so its failure is a write failure. */
    if (fclose(f) != 0 && st == DATA_OK)
        st = data_fail(err, DATA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    /* A half-written shard would only fail later with a confusing size error. */
    if (st != DATA_OK)
        unlink(path);
    return st;
}

/* Checks the mapped header against the file size. */
static data_status check_header(const data_shard *s, char *err)
{
    int32_t h[3];
    memcpy(h, s->map, sizeof h);
    if (h[0] == LLMC_U32_MAGIC && h[1] == LLMC_U32_VERSION)
        return data_fail(err, DATA_ERR_FORMAT,
                    "%s: llm.c shard with uint32 tokens (magic %d, version %d) "
                    "is not supported yet; only uint16 shards (magic %d) are",
                    s->path, LLMC_U32_MAGIC, LLMC_U32_VERSION, DATA_SHARD_MAGIC);
    if (h[0] != DATA_SHARD_MAGIC)
        return data_fail(err, DATA_ERR_FORMAT,
                    "%s: bad magic %d (expected %d); not an llm.c token shard",
                    s->path, h[0], DATA_SHARD_MAGIC);
    if (h[1] != DATA_SHARD_VERSION)
        return data_fail(err, DATA_ERR_FORMAT,
                    "%s: shard version %d is not supported (expected %d)", s->path,
                    h[1], DATA_SHARD_VERSION);
    if (h[2] < 0)
        return data_fail(err, DATA_ERR_FORMAT, "%s: header says %d tokens", s->path,
                    h[2]);
    size_t want = HEADER_BYTES + (size_t)h[2] * sizeof(uint16_t);
    if (want != s->map_len)
        return data_fail(err, DATA_ERR_FORMAT,
                    "%s: header says %d tokens (%zu bytes) but the file has %zu bytes",
                    s->path, h[2], want, s->map_len);
    return DATA_OK;
}

/* Maps the open file fd of size len into s. */
static data_status map_file(data_shard *s, int fd, size_t len, char *err)
{
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return data_fail(err, DATA_ERR_IO, "%s: cannot map: %s", s->path, strerror(errno));
    s->map = map;
    s->map_len = len;
    return DATA_OK;
}

/* Checks that fd is a regular file big enough for a header, then maps it. */
static data_status map_checked(data_shard *s, int fd, char *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return data_fail(err, DATA_ERR_IO, "%s: cannot stat: %s", s->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return data_fail(err, DATA_ERR_IO, "%s: not a regular file", s->path);
    if (st.st_size == 0)
        return data_fail(err, DATA_ERR_FORMAT, "%s: empty file; not a token shard",
                    s->path);
    if ((size_t)st.st_size < HEADER_BYTES)
        return data_fail(err, DATA_ERR_FORMAT,
                    "%s: %lld bytes is shorter than the %zu-byte shard header",
                    s->path, (long long)st.st_size, HEADER_BYTES);
    return map_file(s, fd, (size_t)st.st_size, err);
}

data_status data_shard_open(data_shard *s, const char *path, data_error_t err)
{
    memset(s, 0, sizeof *s);
    if ((size_t)snprintf(s->path, sizeof s->path, "%s", path) >= sizeof s->path)
        return data_fail(err, DATA_ERR_ARG, "%.64s...: path longer than %zu bytes", path,
                    sizeof s->path - 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return data_fail(err, DATA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    data_status st = map_checked(s, fd, err);
    close(fd); /* the mapping stays valid without the descriptor */
    if (st == DATA_OK)
        st = check_header(s, err);
    if (st != DATA_OK) {
        data_shard_close(s);
        return st;
    }
    s->tokens = (const uint16_t *)((const char *)s->map + HEADER_BYTES);
    s->ntok = (s->map_len - HEADER_BYTES) / sizeof(uint16_t);
    return DATA_OK;
}

void data_shard_close(data_shard *s)
{
    if (s->map)
        munmap(s->map, s->map_len);
    memset(s, 0, sizeof *s);
}
