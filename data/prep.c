/* prep.c: `gptrain prep`: text to token shards (data.h, data_prep).
 *
 * The inputs are listed first (prep_inputs.c). The tokenizer is then loaded,
 * or trained on the first train_bytes of text. Encoding streams through the
 * documents in windows of about 64 MB: each document is cut into ~1 MB
 * chunks at a newline followed by a non-space ASCII character, where GPT-2's
 * pre-splitting always breaks, so chunks encode independently, in parallel,
 * to exactly the tokens of the whole document. Tokens then flow in document
 * order, an end-of-text token before each document, through the train/val
 * block rule into the shard writers. The output directory gets the shards,
 * the tokenizer and a manifest. */
#include "data.h"
#include "data_internal.h"

#include <errno.h>
#include <glob.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_BYTES ((size_t)1 << 20)
#define WINDOW_BYTES ((size_t)64 << 20)

typedef struct {
    const unsigned char *p;
    size_t len;
    int doc, first; /* first: the document's first chunk (an EOT goes before it) */
    data_tokens out;
} chunk;

/* Tokens of one split, written out a shard at a time. */
typedef struct {
    const char *dir, *split;
    uint32_t *buf;
    size_t len, cap, total;
    int nshards, vocab;
} shard_sink;

typedef struct {
    const data_prep_opts *o;
    data_prep_stats *stats;
    char *err;
    data_inputs in;
    data_tokenizer *tok;
    shard_sink sink[2]; /* train, val */
    size_t block, block_fill;
    size_t bytes_done;
    double t0, last_report;
} prep_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static data_status check_opts(const data_prep_opts *o, int n_inputs, char *err) {
    if (!o || n_inputs < 1)
        return data_fail(err, DATA_ERR_ARG, "prep: no input files or directories given");
    if (!o->out_dir || !*o->out_dir)
        return data_fail(err, DATA_ERR_ARG, "prep: no output directory given");
    if (!o->tokenizer && (o->vocab_size < 257 || o->vocab_size > (1 << 24)))
        return data_fail(err, DATA_ERR_ARG, "prep: vocab size %d must be in [257, %d]",
                         o->vocab_size, 1 << 24);
    if (o->block_tokens < 1 || o->shard_tokens < 1 || o->shard_tokens > INT32_MAX)
        return data_fail(err, DATA_ERR_ARG, "prep: block tokens %zu must be >= 1 and shard "
                         "tokens %zu in [1, %d]", o->block_tokens, o->shard_tokens, INT32_MAX);
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0))
        return data_fail(err, DATA_ERR_ARG, "prep: val fraction %g must be in [0, 1)",
                         o->val_fraction);
    return DATA_OK;
}

/* Length of the next chunk of t: about CHUNK_BYTES, ending where a newline is
 * followed by a non-space ASCII character (a pre-splitting boundary). */
static size_t chunk_len(const unsigned char *t, size_t len) {
    if (len <= CHUNK_BYTES) return len;
    for (size_t i = CHUNK_BYTES; i < len; i++) {
        unsigned char c = t[i];
        if (t[i - 1] == '\n' && c < 0x80 && c > ' ') return i;
    }
    return len;
}

static data_status train_tokenizer(prep_ctx *c) {
    double t = now_s();
    data_bpe_trainer *tr = data_bpe_trainer_new();
    if (!tr) return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory for the trainer");
    size_t budget = c->o->train_bytes ? c->o->train_bytes : SIZE_MAX, used = 0;
    data_status st = DATA_OK;
    for (int d = 0; d < c->in.n && used < budget && st == DATA_OK; d++) {
        data_doc_text text;
        if ((st = data_doc_open(&c->in.docs[d], &text, c->err))) break;
        for (size_t off = 0; off < text.len && used < budget && st == DATA_OK;) {
            size_t n = chunk_len(text.p + off, text.len - off);
            st = data_bpe_trainer_add(tr, text.p + off, n, c->err);
            off += n;
            used += n;
        }
        data_doc_close(&text);
    }
    if (st == DATA_OK && !c->o->quiet)
        fprintf(stderr, "prep: training a %d-token BPE tokenizer on %.1f MB of text...\n",
                c->o->vocab_size, used / 1048576.0);
    if (st == DATA_OK) st = data_bpe_trainer_finish(tr, c->o->vocab_size, &c->tok, c->err);
    data_bpe_trainer_free(tr);
    c->stats->tokenizer_seconds = now_s() - t;
    if (st == DATA_OK && !c->o->quiet)
        fprintf(stderr, "prep: trained a %d-token BPE tokenizer on %.1f MB in %.1f s\n",
                data_tok_vocab_size(c->tok), used / 1048576.0, c->stats->tokenizer_seconds);
    return st;
}

static data_status sink_flush(shard_sink *k, char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%06d.bin", k->dir, k->split, k->nshards);
    data_status st = data_shard_write(path, k->buf, k->len, k->vocab, err);
    if (st == DATA_OK) {
        k->nshards++;
        k->len = 0;
    }
    return st;
}

static data_status sink_push(shard_sink *k, uint32_t tok, size_t shard_tokens, char *err) {
    if (k->len == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 1 << 16;
        cap = cap < shard_tokens ? cap : shard_tokens;
        uint32_t *b = realloc(k->buf, cap * sizeof *b);
        if (!b) return data_fail(err, DATA_ERR_NOMEM, "prep: out of memory for a shard");
        k->buf = b;
        k->cap = cap;
    }
    k->buf[k->len++] = tok;
    k->total++;
    return k->len == shard_tokens ? sink_flush(k, err) : DATA_OK;
}

/* Block i goes to val when the running count floor(i*f) steps up, which
 * spreads val blocks evenly through the corpus. */
static int is_val(size_t i, double f) {
    return (size_t)((double)(i + 1) * f) > (size_t)((double)i * f);
}

static data_status emit(prep_ctx *c, const uint32_t *ids, size_t n) {
    data_status st = DATA_OK;
    for (size_t i = 0; i < n && st == DATA_OK; i++) {
        st = sink_push(&c->sink[is_val(c->block, c->o->val_fraction)], ids[i],
                       c->o->shard_tokens, c->err);
        if (++c->block_fill == c->o->block_tokens) {
            c->block++;
            c->block_fill = 0;
        }
    }
    return st;
}

/* Encodes chunks[0..n) in parallel, one encoder per thread; the first error
 * (in chunk order) wins, so the message does not depend on timing. */
static data_status encode_window(prep_ctx *c, chunk *ch, int n, data_encoder **enc) {
    data_status *res = calloc((size_t)n, sizeof *res);
    char (*errs)[DATA_ERRLEN] = calloc((size_t)n, DATA_ERRLEN);
    if (!res || !errs) {
        free(res);
        free(errs);
        return data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory encoding");
    }
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++)
        res[i] = data_encode(enc[omp_get_thread_num()], ch[i].p, ch[i].len, &ch[i].out, errs[i]);
    data_status st = DATA_OK;
    uint32_t eot = (uint32_t)data_tok_eot(c->tok);
    for (int i = 0; i < n && st == DATA_OK; i++) {
        if (res[i]) st = data_fail(c->err, res[i], "%s", errs[i]);
        else if (ch[i].first && data_tok_eot(c->tok) >= 0) st = emit(c, &eot, 1);
        if (st == DATA_OK) st = emit(c, ch[i].out.ids, ch[i].out.len);
    }
    free(res);
    free(errs);
    return st;
}

static void report(prep_ctx *c, int force) {
    double t = now_s();
    if (c->o->quiet || (!force && t - c->last_report < 2.0)) return;
    c->last_report = t;
    fprintf(stderr, "prep: encoded %.1f of %.1f MB (%.0f%%), %.1f MB/s\n",
            c->bytes_done / 1048576.0, c->in.bytes / 1048576.0,
            100.0 * c->bytes_done / (double)c->in.bytes,
            c->bytes_done / 1048576.0 / (t - c->t0 + 1e-9));
}

/* Window-sized batches of chunks: documents are mapped while their chunks
 * are in the window and unmapped right after. */
typedef struct {
    chunk *ch;
    data_doc_text *maps;
    int n, nmaps;
} window;

static data_status run_window(prep_ctx *c, window *w, data_encoder **enc) {
    data_status st = encode_window(c, w->ch, w->n, enc);
    for (int i = 0; i < w->n; i++) {
        c->bytes_done += w->ch[i].len;
        data_tokens_free(&w->ch[i].out);
    }
    for (int i = 0; i < w->nmaps; i++) data_doc_close(&w->maps[i]);
    w->n = w->nmaps = 0;
    report(c, 0);
    return st;
}

static data_status encode_all(prep_ctx *c, data_encoder **enc) {
    int cap = (int)(WINDOW_BYTES / CHUNK_BYTES) + 2;
    window w = {calloc((size_t)cap, sizeof(chunk)), calloc((size_t)cap, sizeof(data_doc_text)), 0, 0};
    data_status st = w.ch && w.maps ? DATA_OK
                   : data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory encoding");
    size_t wbytes = 0;
    for (int d = 0; d < c->in.n && st == DATA_OK; d++) {
        data_doc_text *t = &w.maps[w.nmaps];
        if ((st = data_doc_open(&c->in.docs[d], t, c->err))) break;
        w.nmaps++;
        for (size_t off = 0; off < t->len && st == DATA_OK;) {
            size_t n = chunk_len(t->p + off, t->len - off);
            w.ch[w.n++] = (chunk){t->p + off, n, d, off == 0, {0}};
            off += n;
            wbytes += n;
            if (wbytes >= WINDOW_BYTES || w.n == cap || w.nmaps == cap) {
                /* Keep the current document mapped if it goes on. */
                int keep = off < t->len;
                if (keep) w.nmaps--;
                st = run_window(c, &w, enc);
                if (keep) w.maps[w.nmaps++] = *t;
                if (keep) t = &w.maps[0];
                wbytes = 0;
            }
        }
    }
    if (st == DATA_OK && w.n) st = run_window(c, &w, enc);
    for (int i = 0; i < w.nmaps; i++) data_doc_close(&w.maps[i]);
    free(w.ch);
    free(w.maps);
    return st;
}

/* mkdir -p. */
static data_status make_dirs(const char *dir, char *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return data_fail(err, DATA_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
        *s = '/';
    }
    struct stat st;
    if ((mkdir(p, 0777) != 0 && errno != EEXIST) || stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return data_fail(err, DATA_ERR_IO, "%s: cannot create directory", dir);
    return DATA_OK;
}

/* Removes shards left by an earlier run: the loader globs the directory, so
 * a stale train_000003.bin would silently join the new data. */
static data_status remove_old_shards(const char *dir, const char *split, int quiet, char *err) {
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/%s_*.bin", dir, split);
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) return DATA_OK;
    data_status st = rc == 0 ? DATA_OK : data_fail(err, DATA_ERR_IO, "%s: cannot list old shards", dir);
    for (size_t i = 0; st == DATA_OK && i < g.gl_pathc; i++)
        if (unlink(g.gl_pathv[i]) != 0)
            st = data_fail(err, DATA_ERR_IO, "%s: cannot remove old shard: %s", g.gl_pathv[i],
                           strerror(errno));
    if (st == DATA_OK && !quiet)
        fprintf(stderr, "prep: removed %zu old %s shards from %s\n", g.gl_pathc, split, dir);
    globfree(&g);
    return st;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_shards(FILE *f, const char *split, int n) {
    fprintf(f, "  \"%s_shards\": [", split);
    for (int i = 0; i < n; i++) fprintf(f, "%s\"%s_%06d.bin\"", i ? ", " : "", split, i);
    fprintf(f, "],\n");
}

/* manifest.json: what the shards hold and where they came from. */
static data_status write_manifest(prep_ctx *c) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", c->o->out_dir, DATA_MANIFEST_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return data_fail(c->err, DATA_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    const data_prep_stats *s = c->stats;
    fprintf(f, "{\n  \"format\": \"gptrain-shards\",\n  \"version\": 1,\n"
            "  \"tokenizer\": \"%s\",\n  \"vocab_size\": %d,\n  \"eot\": %d,\n"
            "  \"token_bytes\": %d,\n  \"documents\": %d,\n  \"text_bytes\": %zu,\n"
            "  \"train_tokens\": %zu,\n  \"val_tokens\": %zu,\n  \"val_fraction\": %g,\n"
            "  \"block_tokens\": %zu,\n", DATA_TOKENIZER_FILE, s->vocab_size,
            data_tok_eot(c->tok), s->vocab_size > 65535 ? 4 : 2, c->in.n, s->text_bytes,
            s->train_tokens, s->val_tokens, c->o->val_fraction, c->o->block_tokens);
    json_shards(f, "train", s->train_shards);
    json_shards(f, "val", s->val_shards);
    fprintf(f, "  \"sources\": [");
    for (int i = 0; i < c->in.n; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        json_str(f, c->in.docs[i].path);
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return data_fail(c->err, DATA_ERR_IO, "%s: cannot write the manifest", path);
    return DATA_OK;
}

static data_status prepare_output(prep_ctx *c) {
    const data_prep_opts *o = c->o;
    data_status st = make_dirs(o->out_dir, c->err);
    if (st == DATA_OK) st = remove_old_shards(o->out_dir, "train", o->quiet, c->err);
    if (st == DATA_OK) st = remove_old_shards(o->out_dir, "val", o->quiet, c->err);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", o->out_dir, DATA_TOKENIZER_FILE);
    if (st == DATA_OK) st = data_tok_save(c->tok, path, c->err);
    return st;
}

static data_status encode_and_write(prep_ctx *c) {
    int nt = omp_get_max_threads();
    data_encoder **enc = calloc((size_t)nt, sizeof *enc);
    data_status st = enc ? DATA_OK : data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory");
    for (int i = 0; i < nt && st == DATA_OK; i++)
        if (!(enc[i] = data_encoder_new(c->tok)))
            st = data_fail(c->err, DATA_ERR_NOMEM, "prep: out of memory for encoders");
    double t = now_s();
    c->t0 = c->last_report = t;
    if (st == DATA_OK) st = encode_all(c, enc);
    for (int s = 0; s < 2 && st == DATA_OK; s++)
        if (c->sink[s].len) st = sink_flush(&c->sink[s], c->err);
    c->stats->encode_seconds = now_s() - t;
    if (st == DATA_OK && c->stats->encode_seconds > 2.0) report(c, 1);
    for (int i = 0; enc && i < nt; i++) data_encoder_free(enc[i]);
    free(enc);
    return st;
}

static data_status run_prep(prep_ctx *c, const char *const *inputs, int n_inputs) {
    const data_prep_opts *o = c->o;
    data_status st = data_inputs_collect(&c->in, inputs, n_inputs, o->quiet, c->err);
    if (st != DATA_OK) return st;
    st = o->tokenizer ? data_tok_load(&c->tok, o->tokenizer, c->err) : train_tokenizer(c);
    if (st == DATA_OK) st = prepare_output(c);
    int vocab = st == DATA_OK ? data_tok_vocab_size(c->tok) : 0;
    c->sink[0] = (shard_sink){.dir = o->out_dir, .split = "train", .vocab = vocab};
    c->sink[1] = (shard_sink){.dir = o->out_dir, .split = "val", .vocab = vocab};
    if (st == DATA_OK) st = encode_and_write(c);
    data_prep_stats *s = c->stats;
    s->files_used = c->in.n;
    s->files_skipped = c->in.skipped;
    s->files_duplicate = c->in.duplicates;
    s->text_bytes = c->in.bytes;
    s->vocab_size = vocab;
    s->train_tokens = c->sink[0].total;
    s->val_tokens = c->sink[1].total;
    s->train_shards = c->sink[0].nshards;
    s->val_shards = c->sink[1].nshards;
    if (st == DATA_OK) st = write_manifest(c);
    free(c->sink[0].buf);
    free(c->sink[1].buf);
    return st;
}

data_status data_prep(const char *const *inputs, int n_inputs, const data_prep_opts *opts,
                      data_prep_stats *stats, data_error_t err) {
    data_prep_stats unused;
    if (!stats) stats = &unused;
    memset(stats, 0, sizeof *stats);
    data_status st = check_opts(opts, n_inputs, err);
    if (st != DATA_OK) return st;
    prep_ctx c = {.o = opts, .stats = stats, .err = err};
    st = run_prep(&c, inputs, n_inputs);
    data_inputs_free(&c.in);
    data_tok_free(c.tok);
    return st;
}
