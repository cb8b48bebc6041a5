/*
 * A reader of write logs in dm-log-writes' format (lib/log/format.h), for
 * rumpblk log and whatever else walks a log (a crash checker grouping
 * entries into epochs between FLUSH entries).  It reads entry headers one
 * at a time and data in chunks the caller sizes, with pread at explicit
 * offsets: nothing it allocates depends on numbers read from the file
 * beyond one sector (at most 64 KiB), so a corrupt nr_sectors costs a
 * message, not memory.  It validates each entry as it reads it and says
 * what is wrong with the file's name, the entry's index and its byte
 * offset in the file; it never writes.
 *
 * Usage:
 *
 *	if ((error = logfile_open(path, &lf, msg, sizeof(msg))) != 0)
 *		... msg says why ...
 *	for (;;) {
 *		error = logfile_next(lf, &e);
 *		if (error == ENOENT)		every entry has been read
 *			break;
 *		if (error != 0)
 *			... logfile_errmsg(lf) says why ...
 *		if (e.e_flags & LW_MARK) ... e.e_mark ...
 *		else if (e.e_dataoff != 0)	a write: logfile_read()
 *	}
 *	logfile_close(lf);
 *
 * Threads: one thread at a time per struct logfile.
 */
#ifndef RUMPBLK_CLI_LOGFILE_H
#define RUMPBLK_CLI_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

/*
 * rumpblk's record of the image the log starts from (struct lw_base).
 * bs_path is the path the writer was given, NUL-ended; bs_hash holds
 * rb_hash_final()'s 16 bytes if bs_hashed.
 */
struct logfile_base {
	const char	*bs_path;
	bool		bs_truncated;	/* bs_path was cut short */
	bool		bs_hashed;	/* bs_hash is rb_hash128 of it */
	bool		bs_zero;	/* every byte of it was zero */
	uint64_t	bs_size;	/* bytes */
	uint8_t		bs_hash[16];
	uint64_t	bs_time;	/* logging began, Unix seconds */
};

/*
 * One entry, as logfile_next() found it.  Offsets and lengths are in
 * bytes (sectors times S).  e_len is 0 for a FLUSH and a mark.  A write
 * (neither LW_FLUSH, LW_DISCARD nor LW_MARK) has e_len bytes of data at
 * e_dataoff in the file; e_dataoff is 0 for every other entry.  e_mark
 * is a mark's name, NUL-ended, valid until the next call on the reader;
 * NULL unless LW_MARK.
 */
struct logfile_entry {
	uint64_t	e_index;	/* 0: the first entry */
	uint64_t	e_fileoff;	/* where its entry sector is */
	uint64_t	e_flags;	/* LW_FLUSH, LW_FUA, LW_DISCARD, ... */
	uint64_t	e_off;		/* into the unit: sector * S */
	uint64_t	e_len;		/* nr_sectors * S */
	uint64_t	e_dataoff;
	const char	*e_mark;
};

struct logfile;

/*
 * Open the log at path (read-only) and validate its super sector: the
 * magic, version 1, a sector size that is a power of two from 512 to
 * 65536, and rumpblk's base record if there is one.  0 with *lfp, or a
 * positive errno with a message in msg (msglen bytes, NUL-ended) that
 * names path; a file that is not a valid log gives EINVAL.
 */
int	logfile_open(const char *path, struct logfile **lfp, char *msg,
	    size_t msglen);
void	logfile_close(struct logfile *);

/* The path given to logfile_open. */
const char *logfile_path(const struct logfile *);
/* The sector size S of the log, in bytes (the super's). */
uint32_t logfile_secsize(const struct logfile *);
/* The number of entries the super counts. */
uint64_t logfile_nr_entries(const struct logfile *);
/* The file's size in bytes when it was opened. */
uint64_t logfile_size(const struct logfile *);
/* The base record, or NULL if the writer recorded none. */
const struct logfile_base *logfile_base(const struct logfile *);
/*
 * The byte offset just past the last entry read so far (after every entry
 * has been read: the end of the log proper; the writer may have appended
 * entries after it that the super does not count yet).
 */
uint64_t logfile_end(const struct logfile *);

/*
 * The next entry into *e, validated: 0; ENOENT (and no message) once
 * every entry the super counts has been read; EINVAL for an invalid or
 * truncated entry, or an I/O error, with logfile_errmsg() saying which
 * entry and what, e.g. "run.log: entry 17 (byte 90624): data runs past
 * the end of the file (truncated log?)".  After an error other than
 * ENOENT the reader stays at that entry.  An entry's range is checked
 * against the base's size, if recorded (rounded up to a whole sector:
 * the writer cannot log less than one).
 */
int	logfile_next(struct logfile *, struct logfile_entry *e);
/* Start again at entry 0. */
void	logfile_rewind(struct logfile *);

/*
 * Read len bytes of write e's data, from off bytes into it, into buf
 * (the caller's, len bytes): 0, or a positive errno with logfile_errmsg()
 * naming the entry.  off + len must not exceed e->e_len.  A short read is
 * an error (EIO), not zeroes.
 */
int	logfile_read(struct logfile *, const struct logfile_entry *e,
	    uint64_t off, void *buf, size_t len);

/* The message of the last error, "" if none. */
const char *logfile_errmsg(const struct logfile *);

/* "rbh128:" and 32 hex digits of hash into buf (at least 40 bytes). */
void	logfile_hash_str(const uint8_t hash[16], char *buf);
#define LOGFILE_HASHSTR	40

#endif
