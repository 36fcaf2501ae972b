/* data_internal.h: helpers shared by the data module's files; not part of
 * the public API (data.h). */
#ifndef DATA_INTERNAL_H
#define DATA_INTERNAL_H

#include "data.h"

/* Formats a one-line message into err (if non-NULL) and returns st, so an
 * error site is a single `return data_fail(err, DATA_ERR_IO, "...", ...)`. */
__attribute__((format(printf, 3, 4)))
data_status data_fail(char *err, data_status st, const char *fmt, ...);

#endif
