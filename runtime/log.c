/* log.c: the run directory and its machine-readable metrics log
 * (metrics.jsonl: one JSON object per line, flushed at once so that a
 * crashed run keeps every line it wrote). */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include "runtime.h"

rt_status rt_mkdirs(const char *path, rt_error_t err) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            snprintf(err, RT_ERRLEN, "%s: cannot create directory (%s)", buf, strerror(errno));
            return RT_ERR_RUN;
        }
        *p = c;
        if (c == '\0') break;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, RT_ERRLEN, "%s: not a directory", path);
        return RT_ERR_RUN;
    }
    return RT_OK;
}

rt_status rt_metrics_open(rt_metrics *mt, const char *run_dir, int append, rt_error_t err) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", run_dir);
    mt->f = fopen(path, append ? "a" : "w");
    if (!mt->f) {
        snprintf(err, RT_ERRLEN, "%s: cannot open for writing (%s)", path, strerror(errno));
        return RT_ERR_RUN;
    }
    return RT_OK;
}

void rt_metrics_write(rt_metrics *mt, const char *fmt, ...) {
    if (!mt->f) return;
    va_list ap;
    va_start(ap, fmt);
    fputc('{', mt->f);
    vfprintf(mt->f, fmt, ap);
    fputs("}\n", mt->f);
    fflush(mt->f);
    va_end(ap);
}

void rt_metrics_close(rt_metrics *mt) {
    if (mt->f) fclose(mt->f);
    mt->f = NULL;
}
