/*
 * The write log: a layer (RB_RANK_LOG, below the fault layer and above
 * the volatile write cache) that records every write, trim and
 * write-zeroes reaching it, with the data, and every FLUSH and FUA, in
 * the on-disk format of Linux dm-log-writes (format.h says the layout and
 * the order of entries).
 *
 * Contents:
 *   1. the log file: appending entries, writing them out, the super
 *   2. requests
 *   3. the layer and the public calls
 *
 * A write is logged when the stage below completes it, before it is
 * completed above: so the log's order is the order of acknowledgement,
 * and a FLUSH, logged when it arrives, follows exactly the writes it
 * covers.  A write that fails below is not logged (its data on the
 * medium is unknown; with the fault layer above, a write a rule failed
 * or lost never gets here).  Concurrent overlapping writes, whose
 * outcome NBD leaves undefined, are logged in the order they completed.
 *
 * Entries go into a buffer (L_BUFSIZE) written out sequentially when it
 * fills; at every FLUSH, FUA write and mark the buffer is written out
 * and the super's entry count updated, before the request goes on (a
 * FLUSH) or completes (a FUA write, a mark): a copy of the file taken
 * after a FLUSH completed holds every entry up to it.  The file is not
 * synced but at the end: the log records a run, it does not survive the
 * host's own crash.  A write-zeroes is a write whose data is zeroes: the
 * log leaves a hole there (format.h).
 *
 * If the log file cannot be written, logging stops (as dm-log-writes
 * does); I/O goes on, and rumpblk_log_stats reports the error.
 *
 * Locks: L = l_lock (the buffer, the file, the counters).  It is taken at
 * every write's completion, by one thread at a time: a write's data is
 * copied into the buffer under it.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "host/host.h"
#include "format.h"
#include "hash.h"

#define L_BUFSIZE	(4u << 20)
#define L_HASHCHUNK	(1u << 20)

struct wlog {
	struct rb_stage	l_stage;	/* first */
	pthread_mutex_t	l_lock;
	struct rb_frames l_frames;	/* struct lio */
	int		l_fd;		/* ( */
	uint32_t	l_secsize;	/* ( */
	unsigned char	*l_buf;		/* L: entries not yet written out */
	size_t		l_blen;		/* L */
	uint64_t	l_off;		/* L: the file offset of l_buf */
	uint64_t	l_fsize;	/* L: the file's size */
	bool		l_stopped;	/* L: an error stopped logging */
	struct rumpblk_log_stats l_st;	/* L */
};

/* A write below, logged at completion. */
struct lio {
	struct rb_io	li_io;		/* to the stage below */
	struct rb_io	*li_orig;
	struct wlog	*li_l;
};

/* 1. The log file. */

/* All of buf at off (the host's one pwrite loop; not synced). */
static int
write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t moved;

	return rb_host_pwrite(fd, buf, len, off, false, &moved);
}

/* Stop logging after error (L held): the first error is kept. */
static void
stop_locked(struct wlog *l, int error)
{
	if (!l->l_stopped) {
		l->l_stopped = true;
		l->l_st.ls_error = error;
	}
}

/*
 * Write the buffer out and, if super, the entry count (L held).  A hole
 * left at the end of the log (a write-zeroes) is made part of the file.
 */
static void
writeout_locked(struct wlog *l, bool super)
{
	struct lw_super s;
	int error = 0;

	if (l->l_stopped)
		return;
	if (l->l_blen > 0 &&
	    (error = write_all(l->l_fd, l->l_buf, l->l_blen, l->l_off)) == 0) {
		l->l_off += l->l_blen;
		l->l_blen = 0;
	}
	if (error == 0 && l->l_off > l->l_fsize &&
	    ftruncate(l->l_fd, (off_t)l->l_off) != 0)
		error = errno;
	if (error == 0)
		l->l_fsize = l->l_off;
	if (error == 0 && super) {
		s.ls_magic = htole64(LW_MAGIC);
		s.ls_version = htole64(LW_VERSION);
		s.ls_nr_entries = htole64(l->l_st.ls_entries);
		s.ls_sectorsize = htole32(l->l_secsize);
		error = write_all(l->l_fd, &s, sizeof(s), 0);
	}
	if (error != 0)
		stop_locked(l, error);
}

/* Room for len more bytes in the buffer, or false (too large). */
static bool
room_locked(struct wlog *l, size_t len)
{
	if (l->l_blen + len > L_BUFSIZE)
		writeout_locked(l, false);
	return len <= L_BUFSIZE - l->l_blen;
}

/*
 * Append one entry (L held): its sector, then its data: len bytes from
 * data, or a hole of len bytes if data is NULL and the entry is not a
 * discard; a mark's name goes in the entry sector.
 */
static void
append_locked(struct wlog *l, uint64_t flags, uint64_t off, uint64_t len,
    const void *data, const char *mark)
{
	struct lw_entry e;
	size_t mlen = mark != NULL ? strlen(mark) : 0;
	/*
	 * The last sector of a unit whose size is not a multiple of the
	 * sector size is partial, and strategy cuts a write there short:
	 * the entry counts whole sectors, so the data is padded with
	 * zeroes (a reader replays up to the base's size).
	 */
	uint64_t nr = (len + l->l_secsize - 1) / l->l_secsize;
	uint64_t pad = nr * l->l_secsize - len;
	unsigned char *p;
	int error;

	if (l->l_stopped || !room_locked(l, l->l_secsize))
		return;
	p = l->l_buf + l->l_blen;
	memset(p, 0, l->l_secsize);
	e.le_sector = htole64(off / l->l_secsize);
	e.le_nr_sectors = htole64(nr);
	e.le_flags = htole64(flags);
	e.le_data_len = htole64(mlen);
	memcpy(p, &e, sizeof(e));
	if (mlen > 0)
		memcpy(p + sizeof(e), mark, mlen);
	l->l_blen += l->l_secsize;
	l->l_st.ls_entries++;
	if ((flags & (LW_DISCARD | LW_FLUSH | LW_MARK)) != 0 || len == 0)
		return;
	if (data == NULL) {
		/* Zeroes: a hole, past what is buffered. */
		writeout_locked(l, false);
		l->l_off += len + pad;
	} else if (room_locked(l, len + pad)) {
		memcpy(l->l_buf + l->l_blen, data, len);
		memset(l->l_buf + l->l_blen + len, 0, pad);
		l->l_blen += len + pad;
	} else if (l->l_stopped) {
		return;
	} else if ((error = write_all(l->l_fd, data, len, l->l_off)) != 0) {
		stop_locked(l, error);	/* room_locked wrote the buffer out */
	} else {
		l->l_off += len;
		if (l->l_off > l->l_fsize)
			l->l_fsize = l->l_off;
		l->l_off += pad;	/* a hole, made part of the file
					 * at the next write-out */
	}
}

/* 2. Requests. */

static void
lio_done(struct rb_io *io)
{
	struct lio *li = (struct lio *)(void *)io;
	struct wlog *l = li->li_l;
	struct rb_io *orig = li->li_orig;
	int error = io->io_error;
	size_t moved = io->io_moved;
	uint64_t flags = 0;
	bool fua = rb_io_wants_sync(orig);

	rb_frame_put(&l->l_frames, li);
	if (error == 0) {
		if (orig->io_op == RUMPBLK_B_TRIM)
			flags = LW_DISCARD;
		else if (fua)
			flags = LW_FUA;
		rb_mutex_lock(&l->l_lock);
		append_locked(l, flags, orig->io_off, orig->io_len,
		    orig->io_op == RUMPBLK_B_WRITE ? orig->io_data : NULL,
		    NULL);
		switch (orig->io_op) {
		case RUMPBLK_B_WRITE:
			l->l_st.ls_writes++;
			l->l_st.ls_bytes += orig->io_len;
			break;
		case RUMPBLK_B_TRIM:
			l->l_st.ls_trims++;
			break;
		default:
			l->l_st.ls_zeroes++;
			break;
		}
		if (fua) {
			l->l_st.ls_fua++;
			writeout_locked(l, true);
		}
		rb_mutex_unlock(&l->l_lock);
	}
	rb_io_complete(orig, error, moved);
}

static void
log_submit(struct rb_stage *st, struct rb_io *io)
{
	struct wlog *l = (struct wlog *)st;
	struct lio *li;

	switch (io->io_op) {
	case RUMPBLK_B_WRITE:
	case RUMPBLK_B_TRIM:
	case RUMPBLK_B_ZERO:
		if ((li = rb_frame_get(&l->l_frames)) == NULL) {
			rb_io_complete(io, ENOMEM, 0);
			return;
		}
		li->li_orig = io;
		li->li_l = l;
		li->li_io.io_op = io->io_op;
		li->li_io.io_flags = io->io_flags;
		li->li_io.io_off = io->io_off;
		li->li_io.io_len = io->io_len;
		li->li_io.io_data = io->io_data;
		li->li_io.io_unit = io->io_unit;
		li->li_io.io_epoch = io->io_epoch;
		li->li_io.io_done = lio_done;
		rb_stage_pass(st, &li->li_io);
		return;
	case RUMPBLK_B_FLUSH:
		/*
		 * After every write acknowledged before it, in the file
		 * before it goes on.  Not the library's own (a unit's
		 * teardown): the log is the client's stream, and a crash
		 * before that FLUSH is one of its states.
		 */
		if (io->io_flags & RB_IO_NOFAULT) {
			rb_mutex_lock(&l->l_lock);
			writeout_locked(l, true);
			rb_mutex_unlock(&l->l_lock);
			break;
		}
		rb_mutex_lock(&l->l_lock);
		append_locked(l, LW_FLUSH, 0, 0, NULL, NULL);
		l->l_st.ls_flushes++;
		writeout_locked(l, true);
		rb_mutex_unlock(&l->l_lock);
		break;
	default:
		break;
	}
	rb_stage_pass(st, io);
}

/* 3. The layer. */

static void
log_destroy(struct rb_stage *st)
{
	struct wlog *l = (struct wlog *)st;

	rb_mutex_lock(&l->l_lock);
	writeout_locked(l, true);
	if (!l->l_stopped && fsync(l->l_fd) != 0)
		stop_locked(l, errno);
	rb_mutex_unlock(&l->l_lock);
	(void)close(l->l_fd);
	rb_frames_fini(&l->l_frames);
	pthread_mutex_destroy(&l->l_lock);
	free(l->l_buf);
	free(l);
}

static const struct rb_ops log_ops = {
	.name = "log",
	.submit = log_submit,
	.destroy = log_destroy,
	.lends_through = true,		/* reads pass as they came */
};

static struct wlog *
log_of(struct rb_unit *u)
{
	return (struct wlog *)rb_stack_find(u, &log_ops);
}

/*
 * The base record of sector 0: the unit's size and, unless nohash, the
 * hash of its bytes now, read through the whole stack (the fault layer's
 * rules do not see these reads).
 */
static int
base_record(struct rb_unit *u, const char *name, bool nohash,
    unsigned char *sector, uint32_t secsize)
{
	struct lw_base b;
	struct rb_hash h;
	unsigned char *buf;
	size_t n, moved, pathmax = LW_PATHMAX(secsize);
	uint64_t off;
	int error, zero;

	memset(&b, 0, sizeof(b));
	memcpy(b.lb_magic, LB_MAGIC, sizeof(b.lb_magic));
	b.lb_version = htole32(LB_VERSION);
	b.lb_size = htole64(u->u_size);
	b.lb_time = htole64((uint64_t)time(NULL));
	if (!nohash) {
		if ((buf = malloc(L_HASHCHUNK)) == NULL)
			return ENOMEM;
		rb_hash_init(&h);
		for (off = 0; off < u->u_size; off += n) {
			n = u->u_size - off < L_HASHCHUNK ?
			    (size_t)(u->u_size - off) : L_HASHCHUNK;
			error = rb_stack_io(u, RUMPBLK_B_READ, RB_IO_NOFAULT,
			    off, n, buf, &moved);
			if (error == 0 && moved != n)
				error = EIO;
			if (error != 0) {
				free(buf);
				return error;
			}
			rb_hash_update(&h, buf, n);
		}
		free(buf);
		rb_hash_final(&h, b.lb_hash, &zero);
		b.lb_flags = LB_HASHED | (zero ? LB_ZERO : 0);
	}
	n = name != NULL ? strlen(name) : 0;
	if (n > pathmax) {
		n = pathmax;
		b.lb_flags |= LB_TRUNCATED;
	}
	b.lb_flags = htole32(b.lb_flags);
	b.lb_pathlen = htole16((uint16_t)n);
	memcpy(sector + LW_BASE_AT, &b, sizeof(b));
	if (n > 0)
		memcpy(sector + LW_BASE_AT + sizeof(b), name, n);
	return 0;
}

int
rumpblk_write_log(struct rumpblk *rb, int unit, const char *path,
    const char *base, int flags)
{
	struct rb_unit *u;
	struct wlog *l = NULL;
	struct stat sb;
	unsigned ep;
	int fd = -1, error = 0;

	if (path == NULL || (flags & ~RUMPBLK_LOG_NOHASH) != 0)
		return EINVAL;
	rb_mutex_lock(&rb->rb_lock);
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL) {
		rb_mutex_unlock(&rb->rb_lock);
		return ENXIO;
	}
	if (log_of(u) != NULL) {
		error = EBUSY;
		goto out;
	}
	if ((u->u_mode & RUMPBLK_FWRITE) == 0) {
		error = EROFS;
		goto out;
	}
	/* Never over a log or anything else: an empty file or a device. */
	if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
	    fstat(fd, &sb) != 0) {
		error = errno;
		goto out;
	}
	if (S_ISREG(sb.st_mode) ? sb.st_size != 0 : !S_ISBLK(sb.st_mode)) {
		error = S_ISREG(sb.st_mode) ? EEXIST : EINVAL;
		goto out;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->l_buf = malloc(L_BUFSIZE)) == NULL) {
		error = ENOMEM;
		goto out;
	}
	l->l_secsize = 1u << u->u_sectshift;
	/* The super, with the base, is the first sector of the buffer. */
	memset(l->l_buf, 0, l->l_secsize);
	if ((error = base_record(u, base, (flags & RUMPBLK_LOG_NOHASH) != 0,
	    l->l_buf, l->l_secsize)) != 0)
		goto out;
	l->l_blen = l->l_secsize;
	l->l_fd = fd;
	writeout_locked(l, true);
	if ((error = l->l_st.ls_error) != 0)
		goto out;
	pthread_mutex_init(&l->l_lock, NULL);
	rb_frames_init(&l->l_frames, sizeof(struct lio));
	rb_stage_init(&l->l_stage, &log_ops, u, RB_RANK_LOG);
	rb_stack_push(u, &l->l_stage);
	l = NULL;
	fd = -1;
out:
	if (l != NULL) {
		free(l->l_buf);
		free(l);
	}
	if (fd >= 0)
		(void)close(fd);
	rb_unit_rele(u, ep);
	rb_mutex_unlock(&rb->rb_lock);
	return error;
}

int
rumpblk_log_mark(struct rumpblk *rb, int unit, const char *name)
{
	struct rb_unit *u;
	struct wlog *l;
	unsigned ep;
	int error = 0;

	if (name == NULL || *name == '\0')
		return EINVAL;
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	if ((l = log_of(u)) == NULL) {
		rb_unit_rele(u, ep);
		return ENOTSUP;
	}
	if (strlen(name) > LW_MARKMAX(l->l_secsize)) {
		rb_unit_rele(u, ep);
		return ENAMETOOLONG;
	}
	rb_mutex_lock(&l->l_lock);
	append_locked(l, LW_MARK, 0, 0, NULL, name);
	l->l_st.ls_marks++;
	writeout_locked(l, true);
	error = l->l_st.ls_error;
	rb_mutex_unlock(&l->l_lock);
	rb_unit_rele(u, ep);
	return error;
}

int
rumpblk_log_stats(struct rumpblk *rb, int unit, struct rumpblk_log_stats *ls)
{
	struct rb_unit *u;
	struct wlog *l;
	unsigned ep;

	memset(ls, 0, sizeof(*ls));
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	if ((l = log_of(u)) == NULL) {
		rb_unit_rele(u, ep);
		return ENOTSUP;
	}
	rb_mutex_lock(&l->l_lock);
	*ls = l->l_st;
	ls->ls_file_bytes = l->l_off + l->l_blen;
	rb_mutex_unlock(&l->l_lock);
	rb_unit_rele(u, ep);
	return 0;
}
