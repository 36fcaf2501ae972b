/* rundir.c: a run directory's checkpoints: their names, the `latest`
 * pointer and the pruning of old ones (contract in checkpoint.h).
 * `latest` is a one-line text file naming a checkpoint in the same
 * directory; it is replaced by writing latest.tmp, fsyncing it and renaming
 * it over latest, after the checkpoint itself was committed, so it only
 * ever names a complete file. Only rank 0 calls these. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ckpt_internal.h"

void ckpt_name(char *out, size_t len, long step) {
    snprintf(out, len, "ckpt_%08ld.h5", step);
}

ckpt_status ckpt_set_latest(const char *dir, const char *name, ckpt_error_t err) {
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", dir);
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%s\n", name) > 0;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) {
        unlink(tmp);
        snprintf(err, CKPT_ERRLEN, "%s: cannot write the latest-checkpoint pointer", tmp);
        return CKPT_ERR_IO;
    }
    return ckpt_commit(tmp, path, err);
}

ckpt_status ckpt_latest(const char *dir, char *out, size_t len, ckpt_error_t err) {
    char path[4096], name[256] = "";
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, CKPT_ERRLEN, "%s: no checkpoint to resume from", path);
        return CKPT_ERR_IO;
    }
    int ok = fgets(name, sizeof name, f) != NULL;
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    if (!ok || !name[0] || strchr(name, '/')) {
        snprintf(err, CKPT_ERRLEN, "%s: does not name a checkpoint file", path);
        return CKPT_ERR_FORMAT;
    }
    snprintf(out, len, "%s/%s", dir, name);
    return CKPT_OK;
}

/* The step of a committed checkpoint's name, or -1; *tmp is set for a
 * leftover ckpt_*.h5.tmp, or a file MPI-IO made beside one (the lock files
 * of Open MPI's shared file pointer, ckpt_*.h5.tmp-*.lock and the like,
 * which a killed job leaves behind). */
static long step_of(const char *name, int *tmp) {
    long step;
    int end = 0;
    *tmp = 0;
    if (sscanf(name, "ckpt_%ld.h5%n", &step, &end) != 1 || step < 0) return -1;
    if (name[end] == '\0') return step;
    *tmp = strncmp(name + end, ".tmp", 4) == 0;
    return -1;
}

static int cmp_long_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

void ckpt_prune(const char *dir, int keep_last, int keep_every) {
    DIR *d = opendir(dir);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    char path[4096], keep[4096] = "";
    ckpt_error_t err;
    ckpt_latest(dir, keep, sizeof keep, err);
    struct dirent *e;
    while ((e = readdir(d))) {
        int tmp;
        long step = step_of(e->d_name, &tmp);
        if (tmp) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        if (step < 0) continue;
        if (n == cap) {
            long *grown = realloc(steps, sizeof(long) * (cap = cap ? 2 * cap : 64));
            if (!grown) break;
            steps = grown;
        }
        steps[n++] = step;
    }
    closedir(d);
    qsort(steps, n, sizeof(long), cmp_long_desc);
    for (size_t i = keep_last > 0 ? (size_t)keep_last : n; i < n; i++) {
        char name[64];
        ckpt_name(name, sizeof name, steps[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if ((keep_every > 0 && steps[i] % keep_every == 0) || strcmp(path, keep) == 0) continue;
        unlink(path);
    }
    free(steps);
}
