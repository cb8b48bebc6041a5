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

void
fe_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	for (; *p != '\0'; p++) {
		switch (*p) {
		case '"':	fputs("\\\"", f); break;
		case '\\':	fputs("\\\\", f); break;
		case '\n':	fputs("\\n", f); break;
		case '\t':	fputs("\\t", f); break;
		case '\r':	fputs("\\r", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}
