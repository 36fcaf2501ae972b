/* comm_internal.h: what the comm module's files share beyond comm.h: the
 * watchdog's entry and wait, so every collective, wherever it is started,
 * is timed by the same watchdog. Not part of the public API. */
#ifndef COMM_INTERNAL_H
#define COMM_INTERNAL_H

#include <mpi.h>
#include "comm.h"

/* Counts this rank into the next collective (the watchdog's arrival board);
 * call right before starting it. */
void comm_enter(void);

/* Waits for a collective started with status rc into *req, under the
 * watchdog: past the timeout it prints and aborts the job. */
comm_status comm_wait(int rc, MPI_Request *req, const char *op, size_t bytes,
                      comm_error_t err);

#endif
