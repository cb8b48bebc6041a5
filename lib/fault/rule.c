/*
 * The fault rule language of DESIGN.md §9: parsing and the name tables.
 *
 * A rule is a class and comma-separated key=value pairs, e.g.
 * "error,op=write,range=1M-2M,p=0.01,errno=EIO/ENOSPC,seed=7".  The
 * parser is strict: an unknown class or key, a key given twice, a key
 * that does not apply to the class, a malformed number, an empty or
 * inverted range, two triggers, a stale rule without a range or over
 * 1 GiB: each is refused with a message that quotes the rule and names
 * the part at fault.  It never arms anything; the engine does that with
 * the parsed struct.
 *
 * Contents: 1. names (classes, ops, errno values)  2. numbers  3. parse
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "fault.h"

/* 1. Names. */

static const char *const class_names[RUMPBLK_FAULT_NCLASS] = {
	[RUMPBLK_FAULT_SEED] = "seed",
	[RUMPBLK_FAULT_ERROR] = "error",
	[RUMPBLK_FAULT_CORRUPT] = "corrupt",
	[RUMPBLK_FAULT_LOST] = "lost",
	[RUMPBLK_FAULT_MISDIRECT] = "misdirect",
	[RUMPBLK_FAULT_STALE] = "stale",
	[RUMPBLK_FAULT_TORN] = "torn",
	[RUMPBLK_FAULT_DELAY] = "delay",
	[RUMPBLK_FAULT_POWERCUT] = "power-cut",
};

const char *
rumpblk_fault_class_name(enum rumpblk_fault_class c)
{
	return (unsigned)c < RUMPBLK_FAULT_NCLASS ? class_names[c] : NULL;
}

const char *
rb_fault_class_name(int c)
{
	const char *s = rumpblk_fault_class_name((enum rumpblk_fault_class)c);

	return s != NULL ? s : "?";
}

/* A rule class (never "seed", which is not a rule), or -1. */
int
rb_fault_class_parse(const char *s)
{
	for (int c = RUMPBLK_FAULT_ERROR; c < RUMPBLK_FAULT_NCLASS; c++)
		if (strcmp(s, class_names[c]) == 0)
			return c;
	return -1;
}

static const struct {
	const char	*name;
	int		value;
} errnos[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EROFS", EROFS },
	{ "EPERM", EPERM }, { "EACCES", EACCES }, { "EINVAL", EINVAL },
	{ "ENOMEM", ENOMEM }, { "EAGAIN", EAGAIN }, { "EDQUOT", EDQUOT },
	{ "EFBIG", EFBIG }, { "ETIMEDOUT", ETIMEDOUT }, { "ENXIO", ENXIO },
	{ "ENODEV", ENODEV }, { "EBUSY", EBUSY }, { "ECANCELED", ECANCELED },
	{ "EOVERFLOW", EOVERFLOW }, { "ESHUTDOWN", ESHUTDOWN },
	{ "EOPNOTSUPP", EOPNOTSUPP }, { "EILSEQ", EILSEQ },
	{ "EBADMSG", EBADMSG }, { "ENOLINK", ENOLINK },
	{ "ENOMEDIUM", ENOMEDIUM }, { "EMEDIUMTYPE", EMEDIUMTYPE },
};
#define NERRNOS (sizeof(errnos) / sizeof(errnos[0]))

const char *
rb_fault_errno_name(int e)
{
	for (size_t i = 0; i < NERRNOS; i++)
		if (errnos[i].value == e)
			return errnos[i].name;
	return "EIO";
}

int
rb_fault_errno_parse(const char *s)
{
	for (size_t i = 0; i < NERRNOS; i++)
		if (strcmp(s, errnos[i].name) == 0)
			return errnos[i].value;
	return -1;
}

static const struct {
	const char	*name;
	int		op;		/* RUMPBLK_B_* */
	unsigned	bit;		/* FOP_* */
} ops[] = {
	{ "read", RUMPBLK_B_READ, FOP_READ },
	{ "write", RUMPBLK_B_WRITE, FOP_WRITE },
	{ "flush", RUMPBLK_B_FLUSH, FOP_FLUSH },
	{ "trim", RUMPBLK_B_TRIM, FOP_TRIM },
	{ "zero", RUMPBLK_B_ZERO, FOP_ZERO },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

const char *
rb_fault_op_name(int op)
{
	for (size_t i = 0; i < NOPS; i++)
		if (ops[i].op == op)
			return ops[i].name;
	return "?";
}

int
rb_fault_op_parse(const char *s)
{
	for (size_t i = 0; i < NOPS; i++)
		if (strcmp(s, ops[i].name) == 0)
			return ops[i].op;
	return -1;
}

/* FNV-1a, then mixed: the rule id's part of every decision key. */
uint64_t
rb_fault_hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return rb_fault_mix(h);
}

/* 2. Numbers. */

static int
parse_u64(const char *s, uint64_t *vp)
{
	char *end;

	if (*s < '0' || *s > '9')
		return EINVAL;
	errno = 0;
	*vp = strtoull(s, &end, 0);
	if (errno != 0)
		return errno;
	return *end == '\0' ? 0 : EINVAL;
}

/* Bytes with an optional K/M/G/T suffix (powers of 1024). */
static int
parse_size(const char *s, uint64_t *vp)
{
	char *end;
	uint64_t v, m = 1;

	if (*s < '0' || *s > '9')
		return EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return errno;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K': m = 1ull << 10; end++; break;
	case 'm': case 'M': m = 1ull << 20; end++; break;
	case 'g': case 'G': m = 1ull << 30; end++; break;
	case 't': case 'T': m = 1ull << 40; end++; break;
	default:
		return EINVAL;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B' && m > 1)
		end++;
	if (*end != '\0')
		return EINVAL;
	if (v > UINT64_MAX / m)
		return ERANGE;
	*vp = v * m;
	return 0;
}

static int
parse_double(const char *s, double *vp)
{
	char *end;

	if (*s == '\0' || *s == ' ')
		return EINVAL;
	errno = 0;
	*vp = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(*vp))
		return EINVAL;
	return 0;
}

/* 3. Parse. */

enum {
	K_OP, K_RANGE, K_UNIT, K_AFTER, K_P, K_PPM, K_NTH, K_EVERY, K_COUNT,
	K_SEED, K_ID, K_ERRNO, K_BITS, K_SHIFT, K_ATOM, K_MS, K_MODEL, K_NKEYS
};

static const char *const key_names[K_NKEYS] = {
	"op", "range", "unit", "after", "p", "ppm", "nth", "every", "count",
	"seed", "id", "errno", "bits", "shift", "atom", "ms", "model",
};

/* The class-specific keys each class takes (beyond the common ones). */
static bool
key_applies(int key, int class)
{
	switch (key) {
	case K_ERRNO:
		return class == RUMPBLK_FAULT_ERROR ||
		    class == RUMPBLK_FAULT_TORN;
	case K_BITS:
		return class == RUMPBLK_FAULT_CORRUPT;
	case K_SHIFT:
		return class == RUMPBLK_FAULT_MISDIRECT;
	case K_ATOM:
		return class == RUMPBLK_FAULT_TORN ||
		    class == RUMPBLK_FAULT_POWERCUT;
	case K_MODEL:
		return class == RUMPBLK_FAULT_POWERCUT;
	case K_MS:
		return class == RUMPBLK_FAULT_DELAY;
	default:
		return true;
	}
}

/* The ops each class may select, and its natural one. */
static unsigned
class_ops(int class, unsigned *natural)
{
	switch (class) {
	case RUMPBLK_FAULT_CORRUPT:
		*natural = FOP_READ;
		return FOP_READ | FOP_WRITE;
	case RUMPBLK_FAULT_STALE:
		*natural = FOP_READ;
		return FOP_READ;
	case RUMPBLK_FAULT_LOST:
	case RUMPBLK_FAULT_MISDIRECT:
	case RUMPBLK_FAULT_TORN:
		*natural = FOP_WRITE;
		return FOP_WRITE;
	default:
		*natural = FOP_ANY;
		return FOP_ANY;
	}
}

struct perr {
	char		*buf;
	size_t		len;
	const char	*text;
};

static int __attribute__((format(printf, 2, 3)))
fail(struct perr *pe, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (pe->buf == NULL || pe->len == 0)
		return EINVAL;
	n = snprintf(pe->buf, pe->len, "rule '%s': ", pe->text);
	if (n < 0 || (size_t)n >= pe->len)
		return EINVAL;
	va_start(ap, fmt);
	vsnprintf(pe->buf + n, pe->len - (size_t)n, fmt, ap);
	va_end(ap);
	return EINVAL;
}

static bool
valid_id(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= RUMPBLK_FAULT_IDMAX)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' ||
		    *s == '.'))
			return false;
	return true;
}

static int
parse_key(struct perr *pe, struct fault_rule *r, int key, char *val,
    unsigned allowed)
{
	uint64_t v, a, b;
	double d;
	char *tok, *save, *dash;
	int e, op;

	/* Lists are split on '/'; strtok_r would skip empty items. */
	if ((key == K_OP || key == K_ERRNO) && (val[0] == '/' ||
	    val[strlen(val) - 1] == '/' || strstr(val, "//") != NULL))
		return fail(pe, "%s: empty item in '%s'", key_names[key], val);
	switch (key) {
	case K_OP:
		r->fr_ops = 0;
		for (tok = strtok_r(val, "/", &save); tok != NULL;
		    tok = strtok_r(NULL, "/", &save)) {
			if (strcmp(tok, "any") == 0) {
				r->fr_ops |= allowed;
				continue;
			}
			if ((op = rb_fault_op_parse(tok)) < 0)
				return fail(pe, "op: unknown operation '%s' "
				    "(read, write, flush, trim, zero, any)",
				    tok);
			if ((rb_fault_opbit(op) & allowed) == 0)
				return fail(pe, "op: class %s does not apply "
				    "to %s", rb_fault_class_name(r->fr_class),
				    tok);
			r->fr_ops |= rb_fault_opbit(op);
		}
		if (r->fr_ops == 0)
			return fail(pe, "op: no operation given");
		return 0;
	case K_RANGE:
		if ((dash = strchr(val, '-')) == NULL)
			return fail(pe, "range '%s': want START-END", val);
		*dash = '\0';
		if (parse_size(val, &a) != 0)
			return fail(pe, "range: bad start '%s'", val);
		if (parse_size(dash + 1, &b) != 0)
			return fail(pe, "range: bad end '%s'", dash + 1);
		if (b <= a)
			return fail(pe, "range %s-%s is %s (END is exclusive)",
			    val, dash + 1, b == a ? "empty" : "inverted");
		r->fr_start = a;
		r->fr_end = b;
		r->fr_has_range = true;
		return 0;
	case K_UNIT:
		if (parse_u64(val, &v) != 0 || v > 65535)
			return fail(pe, "unit: bad unit number '%s'", val);
		r->fr_unit = (int)v;
		return 0;
	case K_AFTER:
		if (parse_u64(val, &v) != 0)
			return fail(pe, "after: bad number '%s'", val);
		r->fr_after = v;
		return 0;
	case K_P:
		if (parse_double(val, &d) != 0)
			return fail(pe, "p: bad probability '%s'", val);
		if (d < 0 || d > 1)
			return fail(pe, "p=%s is outside 0-1", val);
		r->fr_trig = FT_P;
		r->fr_always = d >= 1;
		r->fr_thresh = d >= 1 ? UINT64_MAX :
		    (uint64_t)ldexp(d, 64);
		return 0;
	case K_PPM:
		if (parse_u64(val, &v) != 0 || v > 1000000)
			return fail(pe, "ppm: '%s' is not a number in "
			    "0-1000000", val);
		r->fr_trig = FT_P;
		r->fr_always = v == 1000000;
		r->fr_thresh = v == 1000000 ? UINT64_MAX :
		    (uint64_t)ldexp((double)v / 1e6, 64);
		return 0;
	case K_NTH:
	case K_EVERY:
		if (parse_u64(val, &v) != 0 || v == 0)
			return fail(pe, "%s: '%s' is not a number >= 1",
			    key_names[key], val);
		r->fr_trig = key == K_NTH ? FT_NTH : FT_EVERY;
		r->fr_n = v;
		return 0;
	case K_COUNT:
		if (parse_u64(val, &v) != 0 || v == 0)
			return fail(pe, "count: '%s' is not a number >= 1",
			    val);
		r->fr_count = v;
		return 0;
	case K_SEED:
		if (parse_u64(val, &v) != 0)
			return fail(pe, "seed: bad number '%s'", val);
		r->fr_seed = v;
		r->fr_seed_set = true;
		return 0;
	case K_ID:
		if (!valid_id(val))
			return fail(pe, "id: '%s' is not 1-%d letters, digits, "
			    "'_', '-' or '.'", val, RUMPBLK_FAULT_IDMAX - 1);
		memcpy(r->fr_id, val, strlen(val) + 1);
		return 0;
	case K_ERRNO:
		r->fr_nerrno = 0;
		for (tok = strtok_r(val, "/", &save); tok != NULL;
		    tok = strtok_r(NULL, "/", &save)) {
			if ((e = rb_fault_errno_parse(tok)) < 0)
				return fail(pe, "errno: unknown value '%s' "
				    "(EIO, ENOSPC, EROFS, EPERM, ...)", tok);
			if (r->fr_nerrno == FAULT_MAXERRNO)
				return fail(pe, "errno: more than %d values",
				    FAULT_MAXERRNO);
			r->fr_errno[r->fr_nerrno++] = e;
		}
		if (r->fr_nerrno == 0)
			return fail(pe, "errno: no value given");
		return 0;
	case K_BITS:
		if (parse_u64(val, &v) != 0 || v == 0 || v > FAULT_MAXBITS)
			return fail(pe, "bits: '%s' is not a number in 1-%d",
			    val, FAULT_MAXBITS);
		r->fr_bits = (unsigned)v;
		return 0;
	case K_SHIFT:
		{
			char *end;
			long long s;

			errno = 0;
			s = strtoll(val, &end, 10);
			if (*val == '\0' || *end != '\0' || errno != 0 ||
			    s == 0)
				return fail(pe, "shift: '%s' is not a non-zero "
				    "number of sectors", val);
			r->fr_shift = s;
			r->fr_has_shift = true;
		}
		return 0;
	case K_ATOM:
		if (parse_size(val, &v) != 0 || v == 0 || v % 512 != 0 ||
		    v > (1ull << 30))
			return fail(pe, "atom: '%s' is not a multiple of 512 "
			    "bytes up to 1G", val);
		r->fr_atom = v;
		return 0;
	case K_MS:
		if (parse_double(val, &d) != 0 || d < 0 || d > 3600000)
			return fail(pe, "ms: '%s' is not a number of "
			    "milliseconds in 0-3600000", val);
		r->fr_ms = d;
		r->fr_delay_ns = (uint64_t)(d * 1e6 + 0.5);
		return 0;
	case K_MODEL:
		if ((e = rb_pcmodel_parse(val)) < 0)
			return fail(pe, "model: unknown model '%s' (lose, keep, "
			    "subset, reorder, sectors, torn)", val);
		r->fr_model = e;
		return 0;
	}
	abort();
}

/*
 * Parse text into *r (zeroed here).  0, or EINVAL with a message in
 * errbuf.  The id, seed and snapshots are left for the engine when not
 * given.
 */
int
rb_fault_parse(const char *text, struct fault_rule *r, char *errbuf,
    size_t errlen)
{
	struct perr pe = { errbuf, errlen, text != NULL ? text : "" };
	char copy[RUMPBLK_FAULT_TEXTMAX], *tok, *save, *eq;
	bool seen[K_NKEYS] = { false };
	unsigned allowed, natural;
	int key, ntrig = 0, error;

	memset(r, 0, sizeof(*r));
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	if (text == NULL || *text == '\0')
		return fail(&pe, "empty rule (want CLASS,KEY=VALUE,...)");
	if (strlen(text) >= sizeof(copy)) {
		pe.text = "...";
		return fail(&pe, "longer than %d bytes",
		    RUMPBLK_FAULT_TEXTMAX - 1);
	}
	memcpy(r->fr_text, text, strlen(text) + 1);
	memcpy(copy, text, strlen(text) + 1);
	r->fr_unit = -1;
	r->fr_end = UINT64_MAX;
	r->fr_bits = 1;

	/* strtok_r would skip empty fields; find them ourselves. */
	if (copy[0] == ',' || copy[strlen(copy) - 1] == ',' ||
	    strstr(copy, ",,") != NULL)
		return fail(&pe, "empty field (two commas, or one at an end)");
	tok = strtok_r(copy, ",", &save);
	if ((r->fr_class = rb_fault_class_parse(tok)) < 0)
		return fail(&pe, "unknown class '%s' (error, corrupt, lost, "
		    "misdirect, stale, torn, delay, power-cut)", tok);
	allowed = class_ops(r->fr_class, &natural);
	r->fr_ops = natural;
	while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
		if ((eq = strchr(tok, '=')) == NULL)
			return fail(&pe, "'%s' is not KEY=VALUE", tok);
		*eq = '\0';
		for (key = 0; key < K_NKEYS; key++)
			if (strcmp(tok, key_names[key]) == 0)
				break;
		if (key == K_NKEYS)
			return fail(&pe, "unknown key '%s'", tok);
		if (!key_applies(key, r->fr_class))
			return fail(&pe, "key '%s' does not apply to class %s",
			    tok, rb_fault_class_name(r->fr_class));
		if (seen[key])
			return fail(&pe, "key '%s' given twice", tok);
		seen[key] = true;
		if (key == K_P || key == K_PPM || key == K_NTH ||
		    key == K_EVERY) {
			if (ntrig++ > 0)
				return fail(&pe, "conflicting triggers: at "
				    "most one of p, ppm, nth, every");
		}
		if (eq[1] == '\0')
			return fail(&pe, "key '%s' has no value", tok);
		if ((error = parse_key(&pe, r, key, eq + 1, allowed)) != 0)
			return error;
	}
	if (r->fr_class == RUMPBLK_FAULT_STALE) {
		if (!r->fr_has_range)
			return fail(&pe, "class stale needs a range= "
			    "(at most 1G)");
		if (r->fr_end - r->fr_start > FAULT_STALEMAX)
			return fail(&pe, "range of a stale rule is over 1G "
			    "(%" PRIu64 " bytes)", r->fr_end - r->fr_start);
	}
	if (r->fr_class == RUMPBLK_FAULT_POWERCUT && r->fr_atom != 0 &&
	    r->fr_model != RUMPBLK_PC_TORN)
		return fail(&pe, "atom= applies to model=torn only");
	return 0;
}

int
rumpblk_fault_check(const char *rule, char *errbuf, size_t errlen)
{
	struct fault_rule r;

	return rb_fault_parse(rule, &r, errbuf, errlen);
}
