/* prep.c: `gptrain prep`, text files to train/val token shards (data.h).
 *
 * This is the minimal version: the whole corpus is read into memory,
 * tokenized byte by byte (vocab 256) and cut into blocks that go to train or
 * val by a deterministic rule, so the same inputs always give the same
 * shards. Directories are walked in sorted order for the same reason, and
 * files are identified by (device, inode) so that links such as the
 * `foo.u8 -> foo` pairs of fortune databases are not counted twice. */
#include "data.h"
#include "data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK ((size_t)1 << 20)
#define PROGRESS_BYTES ((size_t)64 << 20)

typedef struct {
    dev_t dev;
    ino_t ino;
} file_id;

typedef struct {
    const data_prep_opts *opts;
    data_prep_stats *stats;
    unsigned char *text; /* the concatenated text of every file taken */
    size_t len, cap;
    void *seen;          /* tree of the file_ids already visited */
    size_t bytes_read, next_report;
    char *err;
} prep_ctx;

/* Collects one split's tokens and writes a shard each time it fills. */
typedef struct {
    const char *dir, *split;
    uint16_t *buf;
    size_t cap, len;
    int nshards;
} shard_sink;

static data_status check_opts(const data_prep_opts *o, int n_inputs, char *err)
{
    if (!o || n_inputs < 1)
        return data_fail(err, DATA_ERR_ARG, "prep: no input files or directories given");
    if (!o->out_dir || !*o->out_dir)
        return data_fail(err, DATA_ERR_ARG, "prep: no output directory given");
    if (o->block_tokens < 1)
        return data_fail(err, DATA_ERR_ARG, "prep: block_tokens %zu must be >= 1",
                    o->block_tokens);
    /* The shard header stores the token count as an int32. */
    if (o->shard_tokens < 1 || o->shard_tokens > INT32_MAX)
        return data_fail(err, DATA_ERR_ARG, "prep: shard_tokens %zu must be in [1, %d]",
                    o->shard_tokens, INT32_MAX);
    /* Written so that NaN fails too. */
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0))
        return data_fail(err, DATA_ERR_ARG, "prep: val_fraction %g must be in [0, 1)",
                    o->val_fraction);
    return DATA_OK;
}

static int cmp_ids(const void *a, const void *b)
{
    const file_id *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Records (dev, ino) as visited; *dup says whether it already was. A tree
 * keeps this fast for corpora of many small files. */
static data_status mark_seen(prep_ctx *c, const struct stat *st, int *dup)
{
    file_id *id = malloc(sizeof *id);
    if (!id)
        return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory listing files");
    *id = (file_id){st->st_dev, st->st_ino};
    file_id **node = tsearch(id, &c->seen, cmp_ids);
    if (!node) {
        free(id);
        return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory listing files");
    }
    *dup = *node != id;
    if (*dup)
        free(id);
    return DATA_OK;
}

/* Makes room for at least need bytes of text, doubling to keep appends cheap. */
static data_status grow_text(prep_ctx *c, size_t need)
{
    if (need <= c->cap)
        return DATA_OK;
    size_t cap = c->cap ? c->cap : READ_CHUNK;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
    unsigned char *p = realloc(c->text, cap);
    if (!p)
        return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory holding %zu bytes",
                    need);
    c->text = p;
    c->cap = cap;
    return DATA_OK;
}

static void note_progress(prep_ctx *c, size_t got)
{
    c->bytes_read += got;
    if (c->opts->quiet || c->bytes_read < c->next_report)
        return;
    fprintf(stderr, "prep: read %zu MB\n", c->bytes_read >> 20);
    c->next_report = (c->bytes_read / PROGRESS_BYTES + 1) * PROGRESS_BYTES;
}

/* Appends the file's bytes to the text; a file with a NUL byte is binary and
 * leaves the text as it was. */
static data_status read_text(prep_ctx *c, const char *path, int *binary)
{
    *binary = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return data_fail(c->err, DATA_ERR_IO, "%s: cannot open: %s", path,
                    strerror(errno));
    size_t start = c->len;
    data_status st = DATA_OK;
    while ((st = grow_text(c, c->len + READ_CHUNK)) == DATA_OK) {
        ssize_t got = read(fd, c->text + c->len, READ_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            st = data_fail(c->err, DATA_ERR_IO, "%s: cannot read: %s", path,
                      strerror(errno));
        if (got <= 0)
            break;
        note_progress(c, (size_t)got);
        if (memchr(c->text + c->len, 0, (size_t)got)) {
            *binary = 1;
            break;
        }
        c->len += (size_t)got;
    }
    close(fd);
    if (st != DATA_OK || *binary)
        c->len = start;
    return st;
}

static data_status add_file(prep_ctx *c, const char *path)
{
    int binary;
    data_status st = read_text(c, path, &binary);
    if (st != DATA_OK)
        return st;
    *(binary ? &c->stats->files_skipped : &c->stats->files_used) += 1;
    if (binary && !c->opts->quiet)
        fprintf(stderr, "prep: skipping binary file %s\n", path);
    return DATA_OK;
}

static data_status add_path(prep_ctx *c, const char *path, int walked);

static int not_dots(const struct dirent *e)
{
    return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

/* strcmp, not the locale's collation, so the order is the same everywhere. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static data_status add_child(prep_ctx *c, const char *dir, const char *name)
{
    size_t dlen = strlen(dir);
    const char *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";
    char *child;
    if (asprintf(&child, "%s%s%s", dir, sep, name) < 0)
        return data_fail(c->err, DATA_ERR_NOMEM, "%s: out of memory", dir);
    data_status st = add_path(c, child, 1);
    free(child);
    return st;
}

static data_status walk_dir(prep_ctx *c, const char *dir)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, not_dots, by_name);
    if (n < 0)
        return data_fail(c->err, errno == ENOMEM ? DATA_ERR_NOMEM : DATA_ERR_IO,
                    "%s: cannot read directory: %s", dir, strerror(errno));
    data_status st = DATA_OK;
    for (int i = 0; i < n; i++) {
        if (st == DATA_OK)
            st = add_child(c, dir, ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    return st;
}

/* Takes a file or walks a directory. walked: found inside a directory, where
 * a dangling link is skipped instead of failing the whole run. */
static data_status add_path(prep_ctx *c, const char *path, int walked)
{
    struct stat st;
    int found = stat(path, &st) == 0;
    if (!found && !(walked && errno == ENOENT))
        return data_fail(c->err, DATA_ERR_IO, "%s: %s", path, strerror(errno));
    if (!found || (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))) {
        if (!c->opts->quiet)
            fprintf(stderr, "prep: skipping %s %s\n",
                    found ? "special file" : "dangling link", path);
        return DATA_OK;
    }
    /* Directories are marked too, so a link to an ancestor cannot loop. */
    int dup;
    data_status s = mark_seen(c, &st, &dup);
    if (s != DATA_OK)
        return s;
    if (dup) {
        c->stats->files_duplicate += S_ISREG(st.st_mode);
        return DATA_OK;
    }
    return S_ISDIR(st.st_mode) ? walk_dir(c, path) : add_file(c, path);
}

/* mkdir -p: creates each missing component of dir. */
static data_status make_dirs(const char *dir, char *err)
{
    char *p = strdup(dir);
    if (!p)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory", dir);
    int rc = 0;
    for (char *s = p + 1; *s && rc == 0; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        rc = mkdir(p, 0777) != 0 && errno != EEXIST;
        *s = '/';
    }
    if (rc == 0)
        rc = mkdir(p, 0777) != 0 && errno != EEXIST;
    int saved = errno;
    free(p);
    struct stat st;
    if (rc != 0 || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return data_fail(err, DATA_ERR_IO, "%s: cannot create directory: %s", dir,
                    strerror(rc ? saved : ENOTDIR));
    return DATA_OK;
}

/* Removes shards left by an earlier run: the loader globs the directory, so
 * a stale train_000003.bin would silently join the new data. */
static data_status remove_old_shards(const char *dir, const char *split, int quiet,
                                     char *err)
{
    char pattern[4096];
    if ((size_t)snprintf(pattern, sizeof pattern, "%s/%s_*.bin", dir, split) >=
        sizeof pattern)
        return data_fail(err, DATA_ERR_ARG, "%.64s...: output path too long", dir);
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH)
        return DATA_OK;
    data_status st = rc == 0 ? DATA_OK
                             : data_fail(err, DATA_ERR_IO, "%s: cannot list old shards", dir);
    for (size_t i = 0; st == DATA_OK && i < g.gl_pathc; i++)
        if (unlink(g.gl_pathv[i]) != 0)
            st = data_fail(err, DATA_ERR_IO, "%s: cannot remove old shard: %s",
                      g.gl_pathv[i], strerror(errno));
    if (st == DATA_OK && !quiet)
        fprintf(stderr, "prep: removed %zu old %s shards from %s\n", g.gl_pathc,
                split, dir);
    globfree(&g);
    return st;
}

static data_status sink_flush(shard_sink *k, char *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s_%06d.bin", k->dir, k->split,
                         k->nshards) >= sizeof path)
        return data_fail(err, DATA_ERR_ARG, "%.64s...: output path too long", k->dir);
    data_status st = data_shard_write(path, k->buf, k->len, err);
    if (st != DATA_OK)
        return st;
    k->nshards++;
    k->len = 0;
    return DATA_OK;
}

/* Appends n byte tokens, writing a shard whenever the buffer fills. */
static data_status sink_push(shard_sink *k, const unsigned char *b, size_t n,
                             char *err)
{
    while (n > 0) {
        size_t take = k->cap - k->len < n ? k->cap - k->len : n;
        for (size_t i = 0; i < take; i++)
            k->buf[k->len + i] = b[i];
        k->len += take;
        b += take;
        n -= take;
        if (k->len == k->cap) {
            data_status st = sink_flush(k, err);
            if (st != DATA_OK)
                return st;
        }
    }
    return DATA_OK;
}

/* Block i goes to val when the running count floor(i*f) steps up, which
 * spreads val blocks evenly through the corpus. The casts are the floor (the
 * values are non-negative) and keep libm out of the link. */
static int is_val(size_t i, double f)
{
    return (size_t)((double)(i + 1) * f) > (size_t)((double)i * f);
}

static size_t block_len(size_t i, size_t block, size_t total)
{
    return total - i * block < block ? total - i * block : block;
}

/* Cuts the text into blocks and writes the train and val shards. */
static data_status write_splits(prep_ctx *c)
{
    const data_prep_opts *o = c->opts;
    size_t nblocks = (c->len + o->block_tokens - 1) / o->block_tokens;
    size_t total[2] = {0, 0}; /* train, val */
    for (size_t i = 0; i < nblocks; i++)
        total[is_val(i, o->val_fraction)] += block_len(i, o->block_tokens, c->len);
    shard_sink k[2] = {{.dir = o->out_dir, .split = "train"},
                       {.dir = o->out_dir, .split = "val"}};
    data_status st = DATA_OK;
    for (int s = 0; s < 2 && st == DATA_OK; s++) {
        /* One shard's worth, or the whole split when it is smaller. */
        k[s].cap = total[s] < o->shard_tokens ? total[s] : o->shard_tokens;
        if (k[s].cap > 0 && !(k[s].buf = malloc(k[s].cap * sizeof(uint16_t))))
            st = data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory for %zu tokens",
                      k[s].cap);
    }
    for (size_t i = 0; i < nblocks && st == DATA_OK; i++)
        st = sink_push(&k[is_val(i, o->val_fraction)],
                       c->text + i * o->block_tokens,
                       block_len(i, o->block_tokens, c->len), c->err);
    for (int s = 0; s < 2 && st == DATA_OK; s++)
        if (k[s].len > 0)
            st = sink_flush(&k[s], c->err);
    free(k[0].buf);
    free(k[1].buf);
    c->stats->train_tokens = total[0];
    c->stats->val_tokens = total[1];
    c->stats->train_shards = k[0].nshards;
    c->stats->val_shards = k[1].nshards;
    return st;
}

/* Reads every input, then writes the shards; the caller frees c's buffers. */
static data_status run_prep(prep_ctx *c, const char *const *inputs, int n_inputs)
{
    const data_prep_opts *o = c->opts;
    data_status st = DATA_OK;
    for (int i = 0; i < n_inputs && st == DATA_OK; i++)
        st = add_path(c, inputs[i], 0);
    if (st == DATA_OK && c->len == 0)
        st = data_fail(c->err, DATA_ERR_ARG, "prep: no text found in the inputs");
    if (st == DATA_OK)
        st = make_dirs(o->out_dir, c->err);
    if (st == DATA_OK)
        st = remove_old_shards(o->out_dir, "train", o->quiet, c->err);
    if (st == DATA_OK)
        st = remove_old_shards(o->out_dir, "val", o->quiet, c->err);
    if (st == DATA_OK)
        st = write_splits(c);
    return st;
}

data_status data_prep(const char *const *inputs, int n_inputs,
                      const data_prep_opts *opts, data_prep_stats *stats,
                      data_error_t err)
{
    data_prep_stats unused;
    if (!stats)
        stats = &unused;
    memset(stats, 0, sizeof *stats);
    data_status st = check_opts(opts, n_inputs, err);
    if (st != DATA_OK)
        return st;
    prep_ctx c = {.opts = opts, .stats = stats, .next_report = PROGRESS_BYTES,
                  .err = err};
    st = run_prep(&c, inputs, n_inputs);
    free(c.text);
    tdestroy(c.seen, free);
    if (st == DATA_OK && !opts->quiet)
        printf("prep: %d files (%d binary skipped, %d duplicates) -> %zu train "
               "tokens in %d shard%s, %zu val tokens in %d shard%s, in %s\n",
               stats->files_used, stats->files_skipped, stats->files_duplicate,
               stats->train_tokens, stats->train_shards,
               stats->train_shards == 1 ? "" : "s", stats->val_tokens,
               stats->val_shards, stats->val_shards == 1 ? "" : "s", opts->out_dir);
    return st;
}
