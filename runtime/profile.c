/* profile.c: cluster profiles (launch/profiles/NAME.env): the NCCL, UCX and
 * Open MPI environment a platform needs, applied by the binary itself before
 * MPI and NCCL start, so the same command works under mpirun, srun or a
 * plain shell. A profile is NAME=value lines and # comments (the same file
 * an sbatch script can source). Variables already in the environment win:
 * a user's explicit setting is never overridden. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

extern char **environ;

#ifndef GPTRAIN_PROFILE_DIR
#define GPTRAIN_PROFILE_DIR "launch/profiles"
#endif

/* NAME, a path (with a '/'), or "" for none; from the flag or GPTRAIN_PROFILE. */
static void resolve(const char *name, char *path, size_t len) {
    const char *dir = getenv("GPTRAIN_PROFILE_DIR");
    if (strchr(name, '/')) snprintf(path, len, "%s", name);
    else snprintf(path, len, "%s/%s.env", dir && *dir ? dir : GPTRAIN_PROFILE_DIR, name);
}

rt_status rt_profile_apply(const char *name, rt_profile *p, rt_error_t err) {
    memset(p, 0, sizeof(*p));
    if (!name || !*name) name = getenv("GPTRAIN_PROFILE");
    if (!name || !*name) return RT_OK;
    snprintf(p->name, sizeof p->name, "%s", name);
    resolve(name, p->path, sizeof p->path);
    FILE *f = fopen(p->path, "r");
    if (!f) {
        snprintf(err, RT_ERRLEN, "unknown profile '%s': cannot read %s (the profiles are in "
                 "%s)", name, p->path, GPTRAIN_PROFILE_DIR);
        return RT_ERR_USAGE;
    }
    char line[1024];
    int lineno = 0;
    rt_status st = RT_OK;
    while (!st && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        int ok = eq && eq > s;
        for (char *c = s; ok && c < eq; c++) ok = isalnum((unsigned char)*c) || *c == '_';
        if (!ok) {
            snprintf(err, RT_ERRLEN, "%s:%d: not a NAME=value line", p->path, lineno);
            st = RT_ERR_USAGE;
            break;
        }
        *eq = '\0';
        int kept = getenv(s) != NULL;
        if (!kept) setenv(s, eq + 1, 1);
        size_t n = strlen(p->applied);
        snprintf(p->applied + n, sizeof p->applied - n, "%s%s=%s%s", n ? " " : "", s,
                 kept ? getenv(s) : eq + 1, kept ? " (from the environment)" : "");
    }
    fclose(f);
    return st;
}

/* The variables that steer the network: NCCL's, UCX's, and Open MPI's
 * transport choices (not the ones mpirun sets for its own bookkeeping). */
static int network_var(const char *e) {
    static const char *const pre[] = {"NCCL_", "UCX_", "OMPI_MCA_btl", "OMPI_MCA_pml",
                                      "OMPI_MCA_mtl", "OMPI_MCA_coll", "OMPI_MCA_oob",
                                      "OMPI_MCA_osc"};
    for (size_t k = 0; k < sizeof pre / sizeof pre[0]; k++)
        if (!strncmp(e, pre[k], strlen(pre[k]))) return 1;
    return 0;
}

void rt_profile_log(const rt_profile *p, FILE *out) {
    if (p->name[0]) fprintf(out, "profile %s (%s): %s\n", p->name, p->path, p->applied);
    else fprintf(out, "profile none (--profile or GPTRAIN_PROFILE selects one)\n");
    int any = 0;
    for (char **e = environ; *e; e++)
        if (network_var(*e)) fprintf(out, "%s%s", any++ ? " " : "network environment: ", *e);
    if (any) fputc('\n', out);
}
