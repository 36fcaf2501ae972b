/* preempt.c: preemption. SIGTERM, SIGINT and SIGUSR1 (what Slurm, a
 * scheduler's --signal, mpirun's forwarding and Ctrl-C deliver) do not end
 * the process: they only ask the training loop to stop at the end of the
 * current step, where the ranks agree on it, save a checkpoint and exit with
 * code 4. Further signals change nothing, so a second one during that save
 * cannot leave a partial file behind; only SIGKILL ends the run at once,
 * and the commit protocol (checkpoint.h) keeps `latest` whole even then. */
#include <signal.h>
#include <string.h>
#include "runtime.h"

static volatile sig_atomic_t rt_pending_signal;

static void on_signal(int sig) {
    if (!rt_pending_signal) rt_pending_signal = sig;
}

void rt_preempt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, NULL);
}

int rt_preempt_pending(void) { return rt_pending_signal; }
