/*
 * The fault log: one JSON object per firing (JSON Lines), and the parser
 * that reads such a log back for replay.
 *
 * A record carries what identifies the request (unit, op, offset,
 * length, generation) and everything the firing did (errno by name, the
 * flipped bit positions, the misdirect target, the torn length, the
 * delay, the stale snapshot's range), so that replay needs nothing but
 * the log.  Keys always come in the same order and numbers in one
 * spelling, so that two logs of the same firings compare equal line by
 * line once sorted.  The parser reads exactly what the writer writes
 * (flat objects; string, integer, number and integer-array values) and
 * ignores keys it does not know, so that later writers may add some.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "fault.h"

/* Every field of a firing, without the closing brace. */
static void
log_fields(FILE *f, const struct fault_fire *fi)
{
	const uint64_t *bits = rb_fire_bits(fi);
	unsigned i;

	/* Ids are [A-Za-z0-9_.-]: no escaping needed. */
	fprintf(f, "{\"rule\":\"%s\",\"class\":\"%s\",\"op\":\"%s\","
	    "\"unit\":%d,\"offset\":%" PRIu64 ",\"length\":%" PRIu64 ","
	    "\"generation\":%" PRIu64, fi->fi_rule,
	    rb_fault_class_name(fi->fi_class), rb_fault_op_name(fi->fi_op),
	    fi->fi_unit, fi->fi_off, fi->fi_len, fi->fi_gen);
	switch (fi->fi_class) {
	case RUMPBLK_FAULT_ERROR:
		fprintf(f, ",\"errno\":\"%s\"",
		    rb_fault_errno_name(fi->fi_errno));
		break;
	case RUMPBLK_FAULT_CORRUPT:
		fputs(",\"bits\":[", f);
		for (i = 0; i < fi->fi_nbits; i++)
			fprintf(f, "%s%" PRIu64, i ? "," : "", bits[i]);
		fputc(']', f);
		break;
	case RUMPBLK_FAULT_MISDIRECT:
		fprintf(f, ",\"target\":%" PRId64, fi->fi_target);
		break;
	case RUMPBLK_FAULT_STALE:
		fprintf(f, ",\"range\":[%" PRIu64 ",%" PRIu64 "]",
		    fi->fi_snap_off, fi->fi_snap_off + fi->fi_snap_len);
		break;
	case RUMPBLK_FAULT_TORN:
		fprintf(f, ",\"torn_length\":%" PRIu64, fi->fi_torn);
		if (fi->fi_errno != 0)
			fprintf(f, ",\"errno\":\"%s\"",
			    rb_fault_errno_name(fi->fi_errno));
		break;
	case RUMPBLK_FAULT_DELAY:
		fprintf(f, ",\"ms\":%.9g", fi->fi_ms);
		break;
	case RUMPBLK_FAULT_POWERCUT:
		fprintf(f, ",\"model\":\"%s\",\"seed\":%" PRIu64
		    ",\"atom\":%" PRIu64, rumpblk_pcmodel_name(
		    (enum rumpblk_pcmodel)fi->fi_model), fi->fi_pcseed,
		    fi->fi_atom);
		break;
	}
}

void
rb_fault_log_write(FILE *f, const struct fault_fire *fi)
{
	log_fields(f, fi);
	fputs("}\n", f);
}

void
rb_fault_log_cut(struct rumpblk *rb, int unit, const struct fault_fire *fi,
    const struct rumpblk_powercut *pc)
{
	struct fault_engine *fe = rb_fault_engine_get(rb);
	struct fault_fire ctl;

	if (fe == NULL)
		return;
	if (fi == NULL) {
		/* Not a request's firing: replay skips "rule":"ctl". */
		memset(&ctl, 0, sizeof(ctl));
		strcpy(ctl.fi_rule, "ctl");
		ctl.fi_class = RUMPBLK_FAULT_POWERCUT;
		ctl.fi_op = RUMPBLK_B_FLUSH;
		ctl.fi_unit = unit;
		ctl.fi_model = pc->pc_model;
		ctl.fi_pcseed = pc->pc_seed;
		ctl.fi_atom = pc->pc_atom;
		fi = &ctl;
	}
	rb_mutex_lock(&fe->fe_loglock);
	if (fe->fe_log != NULL) {
		log_fields(fe->fe_log, fi);
		fprintf(fe->fe_log, ",\"unflushed\":%" PRIu64 ",\"persisted\":%"
		    PRIu64 ",\"lost\":%" PRIu64 ",\"torn\":%" PRIu64
		    ",\"bytes_lost\":%" PRIu64 "}\n", pc->pc_unflushed,
		    pc->pc_persisted, pc->pc_lost, pc->pc_torn,
		    pc->pc_bytes_lost);
		fflush(fe->fe_log);
	}
	rb_mutex_unlock(&fe->fe_loglock);
}

/* A tiny scanner over one line. */
struct scan {
	const char	*p;
	char		*err;
	size_t		errlen;
};

static int __attribute__((format(printf, 2, 3)))
scan_fail(struct scan *s, const char *fmt, ...)
{
	va_list ap;

	if (s->err != NULL && s->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(s->err, s->errlen, fmt, ap);
		va_end(ap);
	}
	return EINVAL;
}

static void
ws(struct scan *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' ||
	    *s->p == '\n')
		s->p++;
}

static bool
eat(struct scan *s, char c)
{
	ws(s);
	if (*s->p != c)
		return false;
	s->p++;
	return true;
}

/* A string without escapes (the writer never needs them). */
static int
scan_string(struct scan *s, char *buf, size_t len)
{
	size_t n = 0;

	if (!eat(s, '"'))
		return scan_fail(s, "expected a string at '%.20s'", s->p);
	while (*s->p != '"') {
		if (*s->p == '\0' || *s->p == '\\' || n + 1 >= len)
			return scan_fail(s, "bad or long string");
		buf[n++] = *s->p++;
	}
	s->p++;
	buf[n] = '\0';
	return 0;
}

static int
scan_int(struct scan *s, int64_t *vp, bool *neg_ok_big, uint64_t *up)
{
	char *end;

	ws(s);
	errno = 0;
	if (*s->p == '-') {
		*vp = strtoll(s->p, &end, 10);
		*neg_ok_big = false;
	} else {
		*up = strtoull(s->p, &end, 10);
		*vp = (int64_t)*up;
		*neg_ok_big = true;
	}
	if (end == s->p || errno != 0 || *end == '.' || *end == 'e' ||
	    *end == 'E')
		return scan_fail(s, "expected an integer at '%.20s'", s->p);
	s->p = end;
	return 0;
}

static int
scan_u64(struct scan *s, uint64_t *up)
{
	int64_t v;
	bool pos;

	if (scan_int(s, &v, &pos, up) != 0)
		return EINVAL;
	if (!pos)
		return scan_fail(s, "negative value where none may be");
	return 0;
}

/* Skip a value of a key we do not know. */
static int
skip_value(struct scan *s)
{
	char buf[256];
	int depth = 0;

	ws(s);
	if (*s->p == '"')
		return scan_string(s, buf, sizeof(buf));
	do {
		if (*s->p == '[' || *s->p == '{')
			depth++;
		else if (*s->p == ']' || *s->p == '}')
			depth--;
		else if (*s->p == '\0')
			return scan_fail(s, "unterminated value");
		if (depth < 0)
			return scan_fail(s, "unbalanced value");
		s->p++;
	} while (depth > 0 || (*s->p != ',' && *s->p != '}'));
	return 0;
}

int
rb_fault_log_parse(const char *line, struct fault_fire *fi, char *errbuf,
    size_t errlen)
{
	struct scan s = { line, errbuf, errlen };
	char key[32], val[64];
	unsigned have = 0, cap = 0;
	uint64_t u, *np;
	int64_t v;
	bool pos;
	double d;
	char *end;
	int e;

	memset(fi, 0, sizeof(*fi));
	fi->fi_target = -1;
	if (!eat(&s, '{'))
		return scan_fail(&s, "not a JSON object");
	if (eat(&s, '}'))
		goto check;
	do {
		if (scan_string(&s, key, sizeof(key)) != 0 || !eat(&s, ':'))
			goto bad;
		if (strcmp(key, "rule") == 0) {
			if (scan_string(&s, fi->fi_rule,
			    sizeof(fi->fi_rule)) != 0)
				goto bad;
			have |= 1;
		} else if (strcmp(key, "class") == 0) {
			if (scan_string(&s, val, sizeof(val)) != 0)
				goto bad;
			if ((fi->fi_class = rb_fault_class_parse(val)) < 0) {
				scan_fail(&s, "unknown class '%s'", val);
				goto bad;
			}
			have |= 2;
		} else if (strcmp(key, "op") == 0) {
			if (scan_string(&s, val, sizeof(val)) != 0)
				goto bad;
			if ((fi->fi_op = rb_fault_op_parse(val)) < 0) {
				scan_fail(&s, "unknown op '%s'", val);
				goto bad;
			}
			have |= 4;
		} else if (strcmp(key, "unit") == 0) {
			if (scan_u64(&s, &u) != 0 || u > 65535)
				goto bad;
			fi->fi_unit = (int)u;
			have |= 8;
		} else if (strcmp(key, "offset") == 0) {
			if (scan_u64(&s, &fi->fi_off) != 0)
				goto bad;
			have |= 16;
		} else if (strcmp(key, "length") == 0) {
			if (scan_u64(&s, &fi->fi_len) != 0)
				goto bad;
			have |= 32;
		} else if (strcmp(key, "generation") == 0) {
			if (scan_u64(&s, &fi->fi_gen) != 0)
				goto bad;
			have |= 64;
		} else if (strcmp(key, "errno") == 0) {
			if (scan_string(&s, val, sizeof(val)) != 0)
				goto bad;
			if ((e = rb_fault_errno_parse(val)) < 0) {
				scan_fail(&s, "unknown errno '%s'", val);
				goto bad;
			}
			fi->fi_errno = e;
		} else if (strcmp(key, "target") == 0) {
			if (scan_int(&s, &v, &pos, &u) != 0)
				goto bad;
			fi->fi_target = v;
		} else if (strcmp(key, "model") == 0) {
			if (scan_string(&s, val, sizeof(val)) != 0)
				goto bad;
			if ((fi->fi_model = rb_pcmodel_parse(val)) < 0) {
				scan_fail(&s, "unknown model '%s'", val);
				goto bad;
			}
		} else if (strcmp(key, "seed") == 0) {
			if (scan_u64(&s, &fi->fi_pcseed) != 0)
				goto bad;
		} else if (strcmp(key, "atom") == 0) {
			if (scan_u64(&s, &fi->fi_atom) != 0)
				goto bad;
		} else if (strcmp(key, "torn_length") == 0) {
			if (scan_u64(&s, &fi->fi_torn) != 0)
				goto bad;
		} else if (strcmp(key, "ms") == 0) {
			ws(&s);
			d = strtod(s.p, &end);
			if (end == s.p || d < 0 || d > 3600000) {
				scan_fail(&s, "bad ms");
				goto bad;
			}
			s.p = end;
			fi->fi_ms = d;
			fi->fi_delay_ns = (uint64_t)(d * 1e6 + 0.5);
		} else if (strcmp(key, "range") == 0) {
			uint64_t a, b;

			if (!eat(&s, '[') || scan_u64(&s, &a) != 0 ||
			    !eat(&s, ',') || scan_u64(&s, &b) != 0 ||
			    !eat(&s, ']') || b <= a ||
			    b - a > FAULT_STALEMAX) {
				scan_fail(&s, "bad range");
				goto bad;
			}
			fi->fi_snap_off = a;
			fi->fi_snap_len = b - a;
		} else if (strcmp(key, "bits") == 0) {
			if (!eat(&s, '['))
				goto bad;
			if (!eat(&s, ']')) {
				do {
					if (scan_u64(&s, &u) != 0)
						goto bad;
					if (fi->fi_nbits == FAULT_MAXBITS) {
						scan_fail(&s, "too many bits");
						goto bad;
					}
					if (fi->fi_nbits == cap) {
						cap = cap ? cap * 2 : 8;
						np = realloc(fi->fi_bitpos,
						    cap * sizeof(*np));
						if (np == NULL) {
							free(fi->fi_bitpos);
							fi->fi_bitpos = NULL;
							return ENOMEM;
						}
						fi->fi_bitpos = np;
					}
					fi->fi_bitpos[fi->fi_nbits++] = u;
				} while (eat(&s, ','));
				if (!eat(&s, ']'))
					goto bad;
			}
		} else if (skip_value(&s) != 0) {
			goto bad;
		}
	} while (eat(&s, ','));
	if (!eat(&s, '}')) {
		scan_fail(&s, "expected ',' or '}' at '%.20s'", s.p);
		goto bad;
	}
	ws(&s);
	if (*s.p != '\0') {
		scan_fail(&s, "trailing text '%.20s'", s.p);
		goto bad;
	}
check:
	if (have != 127) {
		scan_fail(&s, "a record needs rule, class, op, unit, offset, "
		    "length and generation");
		goto bad;
	}
	if (fi->fi_class == RUMPBLK_FAULT_ERROR && fi->fi_errno == 0)
		fi->fi_errno = EIO;
	if (fi->fi_class == RUMPBLK_FAULT_STALE && fi->fi_snap_len == 0) {
		scan_fail(&s, "a stale record needs its range");
		goto bad;
	}
	for (unsigned i = 0; i < fi->fi_nbits; i++)
		if (fi->fi_bitpos[i] >= fi->fi_len * 8) {
			scan_fail(&s, "bit %" PRIu64 " is past the request",
			    fi->fi_bitpos[i]);
			goto bad;
		}
	return 0;
bad:
	if (errbuf != NULL && errlen > 0 && errbuf[0] == '\0')
		scan_fail(&s, "malformed record at '%.20s'", s.p);
	free(fi->fi_bitpos);
	fi->fi_bitpos = NULL;
	fi->fi_nbits = 0;
	return EINVAL;
}
