/* prep_inputs.c: what `gptrain prep` reads: files, directories (walked
 * recursively in strcmp order, so the output never depends on the file
 * system's order or the locale), glob patterns and standard input.
 * Files are identified by (device, inode) so that links, such as the
 * `foo.u8 -> foo` pairs of the fortunes package, are read once; directories
 * too, so a link to an ancestor cannot loop. A file is binary when its first
 * 64 KiB hold a NUL byte (the check git uses), which is decided here, before
 * any encoding, so a directory without text fails early. */
#include "data.h"
#include "data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNIFF_BYTES ((size_t)64 << 10)

typedef struct {
    dev_t dev;
    ino_t ino;
} file_id;

typedef struct {
    data_inputs *in;
    int quiet;
    char *err;
} walk_ctx;

static int cmp_ids(const void *a, const void *b) {
    const file_id *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Records st's file; *dup tells whether it was seen before. */
static data_status mark_seen(walk_ctx *c, const struct stat *st, int *dup) {
    file_id *id = malloc(sizeof *id);
    if (id) *id = (file_id){st->st_dev, st->st_ino};
    file_id **node = id ? tsearch(id, &c->in->seen, cmp_ids) : NULL;
    if (!node) {
        free(id);
        return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory listing files");
    }
    *dup = *node != id;
    if (*dup) free(id);
    return DATA_OK;
}

static data_status push_doc(walk_ctx *c, const char *path, unsigned char *text, size_t len) {
    data_inputs *in = c->in;
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 64;
        data_doc *d = realloc(in->docs, sizeof(*d) * (size_t)cap);
        if (!d) return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory listing files");
        in->docs = d;
        in->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory listing files");
    in->docs[in->n++] = (data_doc){p, text, len};
    in->bytes += len;
    return DATA_OK;
}

/* The first few skips are named; the summary line counts them all, so a
 * directory of thousands of binaries does not flood the terminal. */
#define SKIPS_NAMED 10

static void skip(walk_ctx *c, const char *why, const char *path) {
    int n = ++c->in->skipped;
    if (c->quiet || n > SKIPS_NAMED + 1) return;
    if (n <= SKIPS_NAMED) fprintf(stderr, "prep: skipping %s %s\n", why, path);
    else fprintf(stderr, "prep: skipping more files; the summary counts them\n");
}

/* Takes a regular file unless it is binary or (inside a directory) unreadable. */
static data_status take_file(walk_ctx *c, const char *path, size_t size, int walked) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (walked) {
            skip(c, "unreadable file", path);
            return DATA_OK;
        }
        return data_fail(c->err, DATA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    unsigned char head[4096];
    size_t seen = 0;
    int binary = 0;
    while (seen < SNIFF_BYTES && !binary) {
        ssize_t got = read(fd, head, sizeof head);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        binary = memchr(head, 0, (size_t)got) != NULL;
        seen += (size_t)got;
    }
    close(fd);
    if (binary) {
        skip(c, "binary file", path);
        return DATA_OK;
    }
    return size ? push_doc(c, path, NULL, size) : DATA_OK;
}

static data_status add_path(walk_ctx *c, const char *path, int walked);

static int not_dots(const struct dirent *e) {
    return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static data_status walk_dir(walk_ctx *c, const char *dir) {
    struct dirent **ents;
    int n = scandir(dir, &ents, not_dots, by_name);
    if (n < 0)
        return data_fail(c->err, errno == ENOMEM ? DATA_ERR_NOMEM : DATA_ERR_IO,
                         "%s: cannot read directory: %s", dir, strerror(errno));
    size_t before = c->in->bytes;
    int skipped = c->in->skipped;
    data_status st = DATA_OK;
    for (int i = 0; i < n; i++) {
        char *child = NULL;
        size_t dlen = strlen(dir);
        if (st == DATA_OK && asprintf(&child, "%s%s%s", dir,
                                      dlen && dir[dlen - 1] == '/' ? "" : "/",
                                      ents[i]->d_name) < 0)
            st = data_fail(c->err, DATA_ERR_NOMEM, "%s: out of memory", dir);
        if (st == DATA_OK) st = add_path(c, child, 1);
        free(child);
        free(ents[i]);
    }
    free(ents);
    if (st == DATA_OK && c->in->bytes == before)
        return data_fail(c->err, DATA_ERR_ARG, "%s: no readable text in this directory "
                         "(%d files skipped)", dir, c->in->skipped - skipped);
    return st;
}

/* A file or directory; walked: found inside a directory, where dangling links,
 * special and unreadable files are skipped instead of failing the run. */
static data_status add_path(walk_ctx *c, const char *path, int walked) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (walked && errno == ENOENT) {
            skip(c, "dangling link", path);
            return DATA_OK;
        }
        return data_fail(c->err, DATA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        if (!walked)
            return data_fail(c->err, DATA_ERR_ARG, "%s: not a regular file or directory", path);
        skip(c, "special file", path);
        return DATA_OK;
    }
    int dup;
    data_status s = mark_seen(c, &st, &dup);
    if (s != DATA_OK) return s;
    if (dup) {
        c->in->duplicates += S_ISREG(st.st_mode);
        return DATA_OK;
    }
    return S_ISDIR(st.st_mode) ? walk_dir(c, path) : take_file(c, path, (size_t)st.st_size, walked);
}

static data_status read_stdin(walk_ctx *c) {
    size_t len = 0, cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory reading stdin");
        ssize_t got = read(0, buf + len, cap - len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            free(buf);
            return data_fail(c->err, DATA_ERR_IO, "-: cannot read standard input: %s",
                             strerror(errno));
        }
        if (got == 0) break;
        len += (size_t)got;
        if (len == cap) {
            unsigned char *p = realloc(buf, cap *= 2);
            if (!p) free(buf);
            buf = p;
        }
    }
    data_status st = len ? push_doc(c, "-", buf, len) : DATA_OK;
    if (st != DATA_OK || !len) free(buf);
    return st;
}

/* A path that does not exist but holds glob characters is a pattern. */
static data_status add_input(walk_ctx *c, const char *arg) {
    if (strcmp(arg, "-") == 0) return read_stdin(c);
    struct stat st;
    if (stat(arg, &st) == 0 || !strpbrk(arg, "*?[")) return add_path(c, arg, 0);
    glob_t g;
    int rc = glob(arg, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) return data_fail(c->err, DATA_ERR_IO, "%s: no file matches", arg);
    if (rc != 0) return data_fail(c->err, DATA_ERR_IO, "%s: cannot expand the pattern", arg);
    data_status s = DATA_OK;
    for (size_t i = 0; i < g.gl_pathc && s == DATA_OK; i++) s = add_path(c, g.gl_pathv[i], 1);
    globfree(&g);
    return s;
}

data_status data_inputs_collect(data_inputs *in, const char *const *paths, int n,
                                int quiet, char *err) {
    memset(in, 0, sizeof *in);
    walk_ctx c = {in, quiet, err};
    data_status st = DATA_OK;
    for (int i = 0; i < n && st == DATA_OK; i++) st = add_input(&c, paths[i]);
    if (st == DATA_OK && in->bytes == 0)
        st = data_fail(err, DATA_ERR_ARG, "prep: no text found in the inputs (%d files "
                       "skipped)", in->skipped);
    if (st != DATA_OK) data_inputs_free(in);
    return st;
}

void data_inputs_free(data_inputs *in) {
    for (int i = 0; i < in->n; i++) {
        free(in->docs[i].path);
        free(in->docs[i].text);
    }
    free(in->docs);
    tdestroy(in->seen, free);
    memset(in, 0, sizeof *in);
}

data_status data_doc_open(const data_doc *d, data_doc_text *t, char *err) {
    memset(t, 0, sizeof *t);
    if (d->text) {
        *t = (data_doc_text){d->text, d->len, NULL};
        return DATA_OK;
    }
    int fd = open(d->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return data_fail(err, DATA_ERR_IO, "%s: cannot open: %s", d->path, strerror(errno));
    /* The size now, not when listed: mapping past the end of a file that
     * shrank meanwhile would fault on access. */
    struct stat st;
    void *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return data_fail(err, DATA_ERR_IO, "%s: cannot map (empty or unreadable now)", d->path);
    *t = (data_doc_text){m, (size_t)st.st_size, m};
    return DATA_OK;
}

void data_doc_close(data_doc_text *t) {
    if (t->map) munmap(t->map, t->len);
    memset(t, 0, sizeof *t);
}
