/*
 * Messages of the front ends (say.h).
 */
#include "say.h"

int
fe_say(char *msg, size_t len, int error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return error;
}

void
fe_vlog(FILE *f, const char *fmt, va_list ap)
{
	char msg[1024];

	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(f != NULL ? f : stderr, "rumpblk serve: %s\n", msg);
}
