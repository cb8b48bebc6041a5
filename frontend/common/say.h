/*
 * Messages of the front ends: one formatted line into a caller's buffer
 * (an error to report later), or one whole line to a log stream.
 */
#ifndef RUMPBLK_FE_SAY_H
#define RUMPBLK_FE_SAY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* msg = the formatted line (truncated to len); returns error. */
int	fe_say(char *msg, size_t len, int error, const char *fmt, ...)
	    __attribute__((format(printf, 4, 5)));

/*
 * "rumpblk serve: " and the formatted line to f (stderr if NULL), in one
 * write, whatever other threads log.
 */
void	fe_vlog(FILE *f, const char *fmt, va_list ap)
	    __attribute__((format(printf, 2, 0)));

/* s as a JSON string, quotes and escapes included. */
void	fe_json_string(FILE *f, const char *s);

#endif /* RUMPBLK_FE_SAY_H */
