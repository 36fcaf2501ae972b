/* ckpt_compare.c: compares the parameters of two gptrain model files for the
 * data-parallel tests: relative error by L2 norm over the whole parameter
 * vector, which must not exceed TOL (0 demands identical bits), and, for
 * information, the worst single tensor.
 * Why not per tensor: the key part of attn.c_attn.bias has an exactly zero
 * true gradient (softmax ignores a constant added to a row of scores), so its
 * gradient is rounding noise, and AdamW's normalisation turns noise into
 * lr-sized steps. Equivalent runs that sum in another order therefore differ
 * there by ~1e-4 relative, as PyTorch runs do, while the model as a whole
 * agrees to ~1e-6.   usage: ckpt_compare A.h5 B.h5 TOL */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "checkpoint.h"

static int load(const char *path, gpt_model *m) {
    gpt_config cfg;
    ckpt_error_t err;
    gpt_error_t gerr;
    if (ckpt_read_config(path, &cfg, err) || gpt_model_create(m, &cfg, 1, 1, gerr) ||
        ckpt_load_model(path, m, err)) {
        fprintf(stderr, "ckpt_compare: %s: cannot load\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: ckpt_compare A.h5 B.h5 TOL\n");
        return 2;
    }
    gpt_model a, b;
    if (load(argv[1], &a) || load(argv[2], &b)) return 2;
    if (a.table.total != b.table.total) {
        fprintf(stderr, "ckpt_compare: the models differ in shape\n");
        return 1;
    }
    double tol = atof(argv[3]), worst = 0.0, dsum = 0.0, rsum = 0.0;
    const char *name = "";
    for (int i = 0; i < a.table.count; i++) {
        const gpt_tensor *t = &a.table.t[i];
        double d = 0.0, r = 0.0;
        for (size_t k = 0; k < t->numel; k++) {
            double x = a.params[t->offset + k], y = b.params[t->offset + k];
            d += (x - y) * (x - y);
            r += y * y;
        }
        double e = sqrt(d) / fmax(sqrt(r), 1e-30);
        if (e > worst) {
            worst = e;
            name = t->name;
        }
        dsum += d;
        rsum += r;
    }
    double total = sqrt(dsum) / fmax(sqrt(rsum), 1e-30);
    printf("ckpt_compare: relative error %.3g over all parameters; worst tensor %.3g (%s)\n",
           total, worst, name);
    gpt_model_free(&a);
    gpt_model_free(&b);
    return (tol == 0.0 ? dsum > 0.0 : total > tol) ? 1 : 0;
}
