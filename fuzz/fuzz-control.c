/*
 * fuzz-control: the control socket's line reader and commands
 * (cli/control.c: cli_control_input, cli_control_line,
 * cli_control_command) on arbitrary bytes, as a client would send them,
 * without the socket.  The input is fed to one connection's reader in
 * pieces of varying size (so that lines are split across reads, and
 * lines of 4095, 4096 and 4097 bytes meet the buffer's edge), on an
 * instance with one 1 MiB unit that has a write cache (so that power-cut
 * works) and fault rules enabled (as serve --control does).
 *
 * Nothing may crash, leak or hang, and every answer must be one line of
 * well-formed JSON, an object that starts with "ok" (checked here with a
 * small validator, which also insists on UTF-8: the answers quote what
 * the client sent).  Rules armed by an input are cleared after it.  It
 * does not check that answers pair with lines; the integration test
 * test-control-guard does.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rumpblk/rumpblk.h>

#include "fuzz-util.h"
#include "control.h"

#define IMAGE_SIZE	(1u << 20)

static struct rumpblk *rb;
static int unit;

static void
setup(void)
{
	int error;

	rb = fuzz_instance(IMAGE_SIZE, &unit);
	if ((error = rumpblk_write_cache(rb, unit, 64 << 10)) != 0)
		fuzz_die("rumpblk_write_cache", error);
	if ((error = rumpblk_fault_enable(rb)) != 0)
		fuzz_die("rumpblk_fault_enable", error);
}

/* A JSON validator (RFC 8259, UTF-8), over p[0..end). */
struct js {
	const unsigned char *p, *end;
	int depth;
};

static bool value(struct js *);

static void
ws(struct js *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
	    *j->p == '\r' || *j->p == '\n'))
		j->p++;
}

static bool
lit(struct js *j, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, s, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool
hex4(struct js *j)
{
	for (int i = 0; i < 4; i++, j->p++)
		if (j->p >= j->end || !((*j->p >= '0' && *j->p <= '9') ||
		    (*j->p >= 'a' && *j->p <= 'f') ||
		    (*j->p >= 'A' && *j->p <= 'F')))
			return false;
	return true;
}

static bool
string(struct js *j)
{
	unsigned c;
	int n;

	if (!lit(j, "\""))
		return false;
	while (j->p < j->end) {
		c = *j->p;
		if (c == '"') {
			j->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (++j->p >= j->end)
				return false;
			c = *j->p++;
			if (c == 'u') {
				if (!hex4(j))
					return false;
			} else if (c == 0 ||
			    strchr("\"\\/bfnrt", (int)c) == NULL)
				return false;
			continue;
		}
		/* UTF-8: the lead byte's length, then continuations. */
		n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 :
		    c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 :
		    -1;
		if (n < 0)
			return false;
		j->p++;
		if (n > 0 && j->p < j->end &&
		    ((c == 0xe0 && *j->p < 0xa0) ||
		    (c == 0xed && *j->p > 0x9f) ||
		    (c == 0xf0 && *j->p < 0x90) ||
		    (c == 0xf4 && *j->p > 0x8f)))
			return false;
		for (; n > 0; n--, j->p++)
			if (j->p >= j->end || (*j->p & 0xc0) != 0x80)
				return false;
	}
	return false;
}

static bool
number(struct js *j)
{
	const unsigned char *s;

	lit(j, "-");
	s = j->p;
	if (lit(j, "0"))
		;
	else {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
		if (j->p == s)
			return false;
	}
	if (lit(j, ".")) {
		s = j->p;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
		if (j->p == s)
			return false;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (!lit(j, "+"))
			lit(j, "-");
		s = j->p;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
		if (j->p == s)
			return false;
	}
	return true;
}

/* An object or array: open, members (key: value for objects), close. */
static bool
compound(struct js *j, bool obj)
{
	if (++j->depth > 64 || !lit(j, obj ? "{" : "["))
		return false;
	ws(j);
	if (lit(j, obj ? "}" : "]"))
		goto done;
	for (;;) {
		ws(j);
		if (obj) {
			if (!string(j))
				return false;
			ws(j);
			if (!lit(j, ":"))
				return false;
		}
		if (!value(j))
			return false;
		ws(j);
		if (lit(j, obj ? "}" : "]"))
			break;
		if (!lit(j, ","))
			return false;
	}
done:
	j->depth--;
	return true;
}

static bool
value(struct js *j)
{
	ws(j);
	if (j->p >= j->end)
		return false;
	switch (*j->p) {
	case '{':	return compound(j, true);
	case '[':	return compound(j, false);
	case '"':	return string(j);
	case 't':	return lit(j, "true");
	case 'f':	return lit(j, "false");
	case 'n':	return lit(j, "null");
	default:	return number(j);
	}
}

/* Every line of out[0..len) is an answer; the last ends with '\n'. */
static void
check_answers(const char *out, size_t len)
{
	const char *p = out, *nl;
	struct js j;

	if (len > 0 && out[len - 1] != '\n')
		abort();		/* an answer without its newline */
	for (; p < out + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(out + len - p));
		if (strncmp(p, "{\"ok\":", 6) != 0)
			abort();
		j = (struct js){ (const unsigned char *)p,
		    (const unsigned char *)nl, 0 };
		if (!compound(&j, true) || j.p != j.end) {
			fprintf(stderr, "fuzz-control: not JSON: %.*s\n",
			    (int)(nl - p), p);
			abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Read sizes, in turn: around the line buffer's edge, and small. */
	static const size_t piece[] = { 4096, 1, 4095, 3, 64, 4097, 17 };
	struct cli_ctl_reader *cr;
	char *out = NULL;
	size_t outlen = 0, off = 0, n;
	bool more = true;
	FILE *f;

	if (rb == NULL)
		setup();
	if ((cr = calloc(1, sizeof(*cr))) == NULL)
		return 0;
	/*
	 * One memory stream per piece, checked and dropped: a piece answers
	 * at most some 2,000 lines, so memory stays bounded.
	 */
	for (int i = 0; more && off < size; i++) {
		n = piece[i % (sizeof(piece) / sizeof(piece[0]))];
		if (n > size - off)
			n = size - off;
		if ((f = open_memstream(&out, &outlen)) == NULL)
			abort();
		more = cli_control_input(rb, unit, cr, (const char *)data + off,
		    n, f);
		if (fclose(f) != 0)
			abort();
		check_answers(out, outlen);
		free(out);
		out = NULL;
		off += n;
	}
	rumpblk_fault_clear(rb);
	free(cr);
	return 0;
}
