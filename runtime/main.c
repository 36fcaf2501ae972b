/* main.c: the gptrain executable: dispatches to a subcommand and turns its
 * status into the process exit code. Nothing else in the project exits but
 * the collective watchdog, which aborts a hung job (comm.h). */
#include <stdio.h>
#include <string.h>
#include "runtime.h"

static void usage(FILE *out) {
    fprintf(out,
        "usage: gptrain COMMAND [flags]\n\n"
        "commands:\n"
        "  prep       turn text files or directories into token shards\n"
        "  train      train a GPT-2 model on token shards\n"
        "  sample     generate text from a saved model\n"
        "  inspect    describe a checkpoint or model file and check that it is whole\n"
        "  eval       loss and perplexity of a model file on a split (any number of ranks)\n"
        "  export     write a model as Hugging Face safetensors or an llm.c file\n"
        "  import     read a Hugging Face safetensors or llm.c model into a model file\n"
        "  commbench  time the collectives at doubling sizes (under mpirun)\n"
        "  doctor     check a cluster or allocation before training (under mpirun)\n"
        "  plot       draw runs' loss and throughput curves as PNG and SVG (gnuplot)\n\n"
        "gptrain COMMAND --help lists a command's flags and their defaults.\n"
        "gptrain --version prints the version.\n");
}

int main(int argc, char **argv) {
    /* Step lines must show up as they happen even when piped to tee or a log. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("gptrain %s\n", GPTRAIN_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return rt_cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "prep") == 0) return rt_cmd_prep(argc - 2, argv + 2);
    if (strcmp(cmd, "sample") == 0) return rt_cmd_sample(argc - 2, argv + 2);
    if (strcmp(cmd, "inspect") == 0) return rt_cmd_inspect(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return rt_cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0) return rt_cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0) return rt_cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "doctor") == 0) return rt_cmd_doctor(argc - 2, argv + 2);
    if (strcmp(cmd, "commbench") == 0) return rt_cmd_commbench(argc - 2, argv + 2);
    if (strcmp(cmd, "plot") == 0) return rt_cmd_plot(argc - 2, argv + 2);
    fprintf(stderr, "gptrain: error: unknown command '%s'\n"
            "usage: gptrain COMMAND [flags]  (gptrain --help lists the commands)\n", cmd);
    return 2;
}
