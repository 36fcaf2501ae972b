/* shard.c: writes and memory-maps llm.c token shards (data.h).
 *
 * A shard is a 1024-byte header of little-endian int32 (magic, version,
 * token count, zeros) followed by the tokens: uint16 for vocabularies up to
 * 65535, uint32 above (llm.c's two formats). Reading maps the file instead
 * of copying it, so the loader can walk corpora larger than memory and only
 * touches the pages it uses, and validates the header against the file size
 * so that a truncated or foreign file is rejected with a message naming the
 * byte at fault rather than read out of bounds. */
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

#define HEADER_BYTES ((size_t)DATA_SHARD_HEADER_INTS * sizeof(int32_t))
/* uint16 tokens are converted through a buffer of this many, so writing a
 * large shard needs no second copy of it. */
#define CHUNK_TOKENS 16384

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

/* Rejects a token that does not fit in uint16 before any file is created. */
static data_status check_u16(const char *path, const uint32_t *tokens, size_t n,
                             int vocab, char *err)
{
    for (size_t i = 0; i < n; i++)
        if (tokens[i] > UINT16_MAX)
            return data_fail(err, DATA_ERR_ARG,
                             "%s: token %u at index %zu does not fit a uint16 shard "
                             "(vocabulary %d)", path, tokens[i], i, vocab);
    return DATA_OK;
}

static data_status write_fail(const char *path, char *err)
{
    return data_fail(err, DATA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
}

/* Writes the tokens as uint16, one chunk at a time. */
static data_status write_u16(FILE *f, const char *path, const uint32_t *tokens,
                             size_t n, char *err)
{
    uint16_t buf[CHUNK_TOKENS];
    for (size_t at = 0; at < n; at += CHUNK_TOKENS) {
        size_t k = n - at < CHUNK_TOKENS ? n - at : CHUNK_TOKENS;
        for (size_t i = 0; i < k; i++)
            buf[i] = (uint16_t)tokens[at + i];
        if (fwrite(buf, sizeof *buf, k, f) != k)
            return write_fail(path, err);
    }
    return DATA_OK;
}

/* Writes the header and the tokens; the caller closes f. */
static data_status write_body(FILE *f, const char *path, const uint32_t *tokens,
                              size_t n, int wide, char *err)
{
    int32_t header[DATA_SHARD_HEADER_INTS] = {0};
    header[0] = wide ? DATA_SHARD_MAGIC_U32 : DATA_SHARD_MAGIC;
    header[1] = wide ? DATA_SHARD_VERSION_U32 : DATA_SHARD_VERSION;
    header[2] = (int32_t)n;
    if (fwrite(header, sizeof header, 1, f) != 1)
        return write_fail(path, err);
    if (!wide)
        return write_u16(f, path, tokens, n, err);
    if (n > 0 && fwrite(tokens, sizeof *tokens, n, f) != n)
        return write_fail(path, err);
    return DATA_OK;
}

data_status data_shard_write(const char *path, const uint32_t *tokens, size_t n,
                             int vocab, data_error_t err)
{
    if (n > INT32_MAX)
        return data_fail(err, DATA_ERR_ARG,
                         "%s: %zu tokens do not fit in one shard (at most %d)", path, n,
                         INT32_MAX);
    int wide = vocab > UINT16_MAX;
    if (!wide) {
        data_status st = check_u16(path, tokens, n, vocab, err);
        if (st != DATA_OK)
            return st;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return data_fail(err, DATA_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    data_status st = write_body(f, path, tokens, n, wide, err);
    /* fclose flushes the buffered tail, so its failure is a write failure. */
    if (fclose(f) != 0 && st == DATA_OK)
        st = write_fail(path, err);
    /* A half-written shard would only fail later with a confusing size error. */
    if (st != DATA_OK)
        unlink(path);
    return st;
}

/* Checks the mapped header against the file size and sets the token width. */
static data_status check_header(data_shard *s, char *err)
{
    int32_t h[3];
    memcpy(h, s->map, sizeof h);
    int want_version;
    if (h[0] == DATA_SHARD_MAGIC) {
        s->token_bytes = 2;
        want_version = DATA_SHARD_VERSION;
    } else if (h[0] == DATA_SHARD_MAGIC_U32) {
        s->token_bytes = 4;
        want_version = DATA_SHARD_VERSION_U32;
    } else {
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s: bad magic %d at byte offset 0 (expected %d or %d); "
                         "not an llm.c token shard",
                         s->path, h[0], DATA_SHARD_MAGIC, DATA_SHARD_MAGIC_U32);
    }
    if (h[1] != want_version)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s: version %d at byte offset 4 is not supported for magic %d "
                         "(expected %d)", s->path, h[1], h[0], want_version);
    if (h[2] < 0)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s: negative token count %d at byte offset 8", s->path, h[2]);
    /* ntok < 2^31 and token_bytes <= 4, so this cannot overflow 64 bits. */
    uint64_t data_bytes = (uint64_t)h[2] * (uint64_t)s->token_bytes;
    if (HEADER_BYTES + data_bytes != s->map_len)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s: header says %d tokens (%llu bytes of data) but the data "
                         "ends at byte offset %zu", s->path, h[2],
                         (unsigned long long)data_bytes, s->map_len);
    s->ntok = (size_t)h[2];
    return DATA_OK;
}

/* Checks that fd is a regular file holding a whole header, then maps it. */
static data_status map_checked(data_shard *s, int fd, char *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return data_fail(err, DATA_ERR_IO, "%s: cannot stat: %s", s->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return data_fail(err, DATA_ERR_IO, "%s: not a regular file", s->path);
    if ((size_t)st.st_size < HEADER_BYTES)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s: truncated: %lld bytes, shorter than the %zu-byte header",
                         s->path, (long long)st.st_size, HEADER_BYTES);
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return data_fail(err, DATA_ERR_IO, "%s: cannot map: %s", s->path, strerror(errno));
    s->map = map;
    s->map_len = (size_t)st.st_size;
    return DATA_OK;
}

data_status data_shard_open(data_shard *s, const char *path, data_error_t err)
{
    memset(s, 0, sizeof *s);
    size_t len = strlen(path);
    if (len >= sizeof s->path)
        return data_fail(err, DATA_ERR_ARG, "%.64s...: path longer than %zu bytes", path,
                         sizeof s->path - 1);
    memcpy(s->path, path, len + 1);
    data_status st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = data_fail(err, DATA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    } else {
        st = map_checked(s, fd, err);
        close(fd); /* the mapping stays valid without the descriptor */
        if (st == DATA_OK)
            st = check_header(s, err);
    }
    if (st != DATA_OK) {
        data_shard_close(s);
        return st;
    }
    s->tokens = (const char *)s->map + HEADER_BYTES;
    return DATA_OK;
}

void data_shard_close(data_shard *s)
{
    if (s->map)
        munmap(s->map, s->map_len);
    memset(s, 0, sizeof *s);
}
