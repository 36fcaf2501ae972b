/* convert.c: `gptrain export` and `gptrain import`: model weights to and
 * from other tools' formats (Hugging Face safetensors with GPT-2's names
 * and layout; llm.c's gpt2_*.bin), through a gptrain model file. An
 * imported model file starts a run with `gptrain train --init-from`. */
#include <string.h>
#include "checkpoint.h"
#include "runtime.h"

static rt_status load_h5(const char *path, gpt_model *m, rt_error_t err) {
    gpt_config cfg;
    ckpt_error_t cerr;
    gpt_error_t gerr;
    if (ckpt_read_config(path, &cfg, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    if (gpt_model_create(m, &cfg, 1, 1, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        return RT_ERR_RUN;
    }
    if (ckpt_load_model(path, m, cerr)) {
        gpt_model_free(m);
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

int rt_cmd_export(int argc, char **argv) {
    const char *format = "safetensors", *out = NULL, *pos[1];
    rt_flag flags[] = {
        {"format", RT_STR, &format, "safetensors (Hugging Face GPT-2: OUT is a directory for "
                                    "model.safetensors and config.json) or llmc (OUT is a "
                                    "gpt2_*.bin file)"},
        {"out", RT_STR, &out, "where to write"},
    };
    int npos, rc = rt_parse_command("export", "usage: gptrain export CKPT --out OUT "
                                    "[--format safetensors|llmc]", argc, argv, flags, 2, pos,
                                    1, &npos);
    if (rc >= 0) return rc;
    int st_fmt = !strcmp(format, "safetensors");
    if (npos != 1 || !out || (!st_fmt && strcmp(format, "llmc")))
        return rt_fail("export", RT_ERR_USAGE, npos != 1 ? "name one checkpoint file"
                       : !out ? "--out is required" : "--format must be safetensors or llmc");
    rt_error_t err;
    gpt_model m;
    rt_status st = load_h5(pos[0], &m, err);
    if (st) return rt_fail("export", st, err);
    ckpt_error_t cerr;
    if (st_fmt) st = rt_mkdirs(out, err);
    if (!st && (st_fmt ? ckpt_export_safetensors(&m, out, cerr)
                : ckpt_export_llmc(&m, out, cerr))) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        st = RT_ERR_RUN;
    }
    gpt_model_free(&m);
    if (!st) printf("wrote %s%s\n", out, st_fmt ? "/model.safetensors and config.json" : "");
    return st ? rt_fail("export", st, err) : 0;
}

int rt_cmd_import(int argc, char **argv) {
    const char *format = "auto", *out = NULL, *pos[1];
    int heads = 0;
    rt_flag flags[] = {
        {"format", RT_STR, &format, "auto (by content), safetensors or llmc"},
        {"out", RT_STR, &out, "the gptrain model file to write (.h5)"},
        {"heads", RT_INT, &heads, "safetensors: attention heads (0: config.json beside it)"},
    };
    int npos, rc = rt_parse_command("import", "usage: gptrain import FILE --out MODEL.h5 "
                                    "[--format auto|safetensors|llmc]", argc, argv, flags, 3,
                                    pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1 || !out)
        return rt_fail("import", RT_ERR_USAGE, npos != 1 ? "name one file to import"
                                                         : "--out is required");
    int llmc = !strcmp(format, "llmc");
    if (!strcmp(format, "auto")) {
        FILE *f = fopen(pos[0], "rb");
        int magic = 0;
        if (f && fread(&magic, 4, 1, f) != 1) magic = 0;
        if (f) fclose(f);
        llmc = magic == 20240326;
    } else if (!llmc && strcmp(format, "safetensors")) {
        return rt_fail("import", RT_ERR_USAGE, "--format must be auto, safetensors or llmc");
    }
    gpt_model m;
    ckpt_error_t cerr;
    ckpt_status cs = llmc ? ckpt_import_llmc(pos[0], &m, cerr)
                          : ckpt_import_safetensors(pos[0], heads, &m, cerr);
    if (cs) return rt_fail("import", cs == CKPT_ERR_IO ? RT_ERR_RUN : RT_ERR_USAGE, cerr);
    cs = ckpt_save_model(out, &m, 0, NULL, cerr);
    if (!cs)
        printf("imported %s: %d layers, %d heads, %d channels, vocab %d, max seq %d -> %s\n",
               pos[0], m.cfg.n_layer, m.cfg.n_head, m.cfg.n_embd, m.cfg.vocab, m.cfg.max_seq,
               out);
    gpt_model_free(&m);
    return cs ? rt_fail("import", RT_ERR_RUN, cerr) : 0;
}
