/*
 * rumpblk: a userspace block-device emulator.
 *
 * This is the whole public interface of librumpblk.  It presents a host file
 * (a disk image, or a host block or character device) as a block device in
 * the style of NetBSD's rumpblk driver: sector-addressed buffers through a
 * strategy routine with completion callbacks, a character-device read/write
 * path, ioctls and counters.  See librumpblk(3) for the full text.
 *
 * Conventions:
 *   - Every function that can fail returns 0 or a positive errno value.
 *     Nothing calls exit() or abort() on bad input.
 *   - Threads: every function is safe to call from several threads at once,
 *     on the same instance and on the same unit.  I/O may complete out of
 *     order and on any thread.
 *   - There is no global state: an instance is a struct rumpblk *, and
 *     several may live in one process.
 *   - struct rumpblk_config and struct rumpblk_stats only ever grow at the
 *     end; the private part of struct rumpblk_buf is a fixed reserved array.
 */
#ifndef RUMPBLK_RUMPBLK_H
#define RUMPBLK_RUMPBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RUMPBLK_VERSION_MAJOR	0
#define RUMPBLK_VERSION_MINOR	1
#define RUMPBLK_VERSION_MICRO	0

/* The library's version string, e.g. "0.1.0". */
const char *rumpblk_version(void);

struct rumpblk;			/* an instance; opaque */

/* ------------------------------------------------------------------ */
/* Constants                                                           */
/* ------------------------------------------------------------------ */

/* rumpblk_register(): use the rest of the host file. */
#define RUMPBLK_SIZENOTSET	((uint64_t)-1)

/* The character-device path splits transfers into at most this much. */
#define RUMPBLK_MAXPHYS		(64 * 1024)

/* b_blkno is always in units of 512 bytes, whatever the sector size. */
#define RUMPBLK_DEV_BSHIFT	9
#define RUMPBLK_DEV_BSIZE	(1 << RUMPBLK_DEV_BSHIFT)

/* Fault injection in seed mode: fail n out of RUMPBLK_BLKFAIL_MAX I/Os. */
#define RUMPBLK_BLKFAIL_MAX	10000

/* Open flags for rumpblk_open()/rumpblk_close(). */
#define RUMPBLK_FREAD		0x0001
#define RUMPBLK_FWRITE		0x0002

/* Backends.  See librumpblk(3), BACKENDS. */
enum rumpblk_backend {
	RUMPBLK_BACKEND_AUTO = 0,	/* mmap windows for files, pio else */
	RUMPBLK_BACKEND_MMAP,		/* the seed's mmap window cache */
	RUMPBLK_BACKEND_PIO,		/* pread/pwrite, worker threads */
	RUMPBLK_BACKEND_DIRECT,		/* O_DIRECT with bounce buffers */
	RUMPBLK_BACKEND_URING,		/* io_uring */
	/* What a unit of a remote backing reports (ui_backend); not a
	 * choice for rumpblk_config or rumpblk_unit_opts. */
	RUMPBLK_BACKEND_NBD,		/* libnbd, aio (lib/remote/nbd.c) */
	RUMPBLK_BACKEND_RBD,		/* librbd, aio */
};

/*
 * The name of a backend ("auto", "mmap", "pio", "direct", "uring"), or
 * NULL for a value that is not one.
 */
const char *rumpblk_backend_name(enum rumpblk_backend);

/* Parse a backend name; 0, or EINVAL for an unknown name. */
int rumpblk_backend_parse(const char *, enum rumpblk_backend *);

/* ------------------------------------------------------------------ */
/* Configuration and instances                                         */
/* ------------------------------------------------------------------ */

struct rumpblk_config {
	uint64_t	winsize;	/* mmap window size, power of two */
	unsigned	wincount;	/* mmap windows per unit, > 0 */
	unsigned	sectshift;	/* log2 of the sector size, >= 9 */
	unsigned	fail;		/* seed-mode faults: n of 10000 */
	uint32_t	fail_seed;	/* seed of the seed-mode LCG */
	bool		fail_seed_set;	/* fail_seed was given */
	unsigned	max_units;	/* size of the unit table */
	enum rumpblk_backend backend;	/* backend for every unit */
	/* --- fields below were added after the first release --- */
	unsigned	workers;	/* async worker threads; 0 = auto */
	bool		sigbus_eio;	/* see BACKENDS in librumpblk(3) */
	unsigned	lat_sample;	/* time 1 request in lat_sample; 0 = 64 */
	uint64_t	reserved[8];	/* zero */
};

/*
 * Defaults: window size 1 MiB, 16 windows, sector shift 9, no faults, up
 * to 16 units, backend auto.  No environment is read.
 */
void rumpblk_config_init(struct rumpblk_config *);

/*
 * Apply the RUMP_BLKFAIL, RUMP_BLKFAIL_SEED, RUMP_BLKWINSIZE,
 * RUMP_BLKWINCOUNT, RUMP_BLKSECTSHIFT and RUMP_BLKBACKEND environment
 * variables to a config, with the seed driver's validation: an invalid value
 * keeps the current one, says so on msgs and is not an error.  Messages are
 * the seed's informational lines, written to msgs (may be NULL).  When
 * RUMP_BLKFAIL is set and no seed is given, a random seed is chosen, stored
 * in fail_seed (fail_seed_set becomes true) and printed.  Returns 0.
 */
int rumpblk_config_from_env(struct rumpblk_config *, FILE *msgs);

/*
 * Create an instance.  A NULL config means defaults plus the environment,
 * with messages on stderr, exactly like the seed's rumpblk_init().
 * Errors: EINVAL for a config that is out of range (winsize not a power of
 * two, wincount 0, sectshift outside 9..16, fail > 10000, unknown backend,
 * max_units 0), ENOMEM.
 */
int rumpblk_create(const struct rumpblk_config *, struct rumpblk **);

/*
 * The config in use by an instance (with the seed actually used).
 */
void rumpblk_get_config(struct rumpblk *, struct rumpblk_config *);

/*
 * Deregister every unit (waiting for in-flight I/O), make written data
 * durable, free everything.  Returns 0, or the first error met while making
 * data durable; the instance is freed either way.  NULL is a no-op.
 */
int rumpblk_destroy(struct rumpblk *);

/* ------------------------------------------------------------------ */
/* Units                                                               */
/* ------------------------------------------------------------------ */

/*
 * Attach a host file (regular file, block device or character device) as a
 * unit.  offset and size are in bytes; size RUMPBLK_SIZENOTSET means the
 * rest of the file.  Registering the same file with the same offset and
 * size again returns the same unit.
 * Errors: the stat error (ENOENT, ...), EINVAL (unsupported file type,
 * offset/size past the end), EOPNOTSUPP (a character device that cannot be
 * sized and no size given), EBUSY (the unit table is full), the open error.
 */
int rumpblk_register(struct rumpblk *, const char *path, uint64_t offset,
    uint64_t size, int *unit);

/*
 * Detach every unit backed by the file at path, after their in-flight
 * buffers complete; written data is made durable first.  Later calls on
 * those units give ENXIO.  ENOENT if no unit uses that file; otherwise 0 or
 * the error met while making data durable (the unit is detached anyway).
 */
int rumpblk_deregister(struct rumpblk *, const char *path);

/*
 * Options of a unit opened from a backing spec (rumpblk_register_spec).
 * Zeroed by rumpblk_unit_opts_init, then set what differs.
 */
struct rumpblk_unit_opts {
	uint64_t	uo_offset;	/* bytes into the backing */
	uint64_t	uo_size;	/* bytes; RUMPBLK_SIZENOTSET: the rest */
	enum rumpblk_backend uo_backend; /* with uo_backend_set */
	bool		uo_backend_set;	/* else the instance's backend */
	bool		uo_readonly;	/* open read-only even if writable */
	/*
	 * Out, optional: a backing that can say more than an errno (a
	 * remote server's message) writes it here, NUL-ended, when the
	 * registration fails; left alone otherwise.
	 */
	char		*uo_errbuf;
	size_t		uo_errlen;
	/* Ceph RBD (rbd:POOL/IMAGE[@SNAP]): the configuration file and
	 * client id; NULL: librados' defaults (and CEPH_ARGS). */
	const char	*uo_ceph_conf;
	const char	*uo_ceph_id;
	uint64_t	uo_reserved[4];	/* zero */
};

/* Defaults: offset 0, the whole backing, the instance's backend. */
void rumpblk_unit_opts_init(struct rumpblk_unit_opts *);

/*
 * Attach a backing as a unit.  spec names it: a host file by its path,
 * or "file:PATH" (a path that could be read as another kind of spec), or
 * "overlay:PATH", a disposable copy-on-write view of the host file PATH
 * (qemu's -snapshot): reads see PATH until written; writes, trims and
 * write-zeroes go to a private sparse delta (an unnamed file in $TMPDIR,
 * default /var/tmp) and PATH, opened read-only, is never written.  Each
 * overlay registration is a new, independent view; FLUSH and FUA make
 * nothing durable; the delta and its map go with the unit.  Memory: 8
 * bytes per 32768 sectors plus 4 KiB per 32768-sector region written
 * (librumpblk(3)).  An overlay has its own I/O path, reported as
 * RUMPBLK_BACKEND_PIO; another backend than auto or pio gives EINVAL;
 * rumpblk_deregister matches no overlay (use rumpblk_deregister_unit).
 * The backend is chosen per unit (opts->uo_backend), and applies to host
 * files.  opts may be NULL (defaults).  Registering the same backing with
 * the same window again returns the same unit (whatever the backend).
 * Errors: those of rumpblk_register, and EINVAL for a bad spec or opts.
 * Threads: any.
 */
int rumpblk_register_spec(struct rumpblk *, const char *spec,
    const struct rumpblk_unit_opts *opts, int *unit);

/*
 * Detach one unit, after its in-flight buffers complete; written data is
 * made durable first.  ENXIO if there is no such unit, else 0 or the
 * error met while making data durable (detached anyway).  Threads: any.
 */
int rumpblk_deregister_unit(struct rumpblk *, int unit);

/* Check access: ENXIO for an unknown unit, EACCES for FWRITE on a read-only
 * unit.  Opening is not required for I/O. */
int rumpblk_open(struct rumpblk *, int unit, int flags);
int rumpblk_close(struct rumpblk *, int unit, int flags);

/* ------------------------------------------------------------------ */
/* Buffers and strategy                                                */
/* ------------------------------------------------------------------ */

/*
 * b_flags.  Exactly one operation bit, plus modifiers.
 *
 * READ/WRITE move b_bcount bytes at b_blkno (512-byte units) from or to
 * b_data.  FLUSH makes every completed write of the unit durable (b_blkno
 * and b_bcount are ignored).  TRIM discards, ZERO writes zeroes over
 * b_bcount bytes at b_blkno (b_data unused).  EXTENTS describes allocation
 * of b_bcount bytes at b_blkno into the struct rumpblk_extents at b_data.
 *
 * ASYNC: the caller does not need a write durable at completion (and the
 * buffer is counted in io_async); FUA: a write or zero is durable when it
 * completes even with ASYNC; NOHOLE: ZERO must leave the range allocated.
 *
 * LOAN (READ only; ignored on other operations): the driver may lend its
 * own memory instead of copying into b_data, as uvm_loan(9) lends pages
 * to the socket layer.  It does so only where the bytes are the medium's
 * as they are (a unit with no layers, the mmap backend, a read within
 * one window); otherwise the read copies as usual.  A lent read completes
 * with LOANED set in b_flags and b_data pointing at the driver's bytes
 * (the caller's buffer is untouched); they are the medium's bytes, so a
 * later write to the same place changes them, as it would a page cache
 * read (reads racing writes are unordered on any disk).  The caller gives
 * them back with rumpblk_unloan(), which restores b_data; until then the
 * unit cannot be deregistered (deregistration waits).  A loan keeps no
 * lock: a slow consumer of the bytes holds back only the unit's
 * teardown, and at most half of a non-covering window cache is lent at
 * once.  Bytes of a file truncated underneath fault when touched
 * (SIGBUS; inside a system call such as send(2), EFAULT): a consumer that
 * cannot handle that should not ask for loans.
 *
 * LOAN_FD (with LOAN): the caller takes lent bytes only through
 * rumpblk_loan_fd(), once and in order (splice or sendfile), never
 * through b_data.  A driver with no bytes of its own in memory (the NBD
 * backing, whose reads arrive on a socket) may then lend them as a pipe
 * that holds them: b_data is NULL, and rumpblk_loan_fd() gives the pipe.
 */
#define RUMPBLK_B_READ		0x0001
#define RUMPBLK_B_WRITE		0x0002
#define RUMPBLK_B_FLUSH		0x0004
#define RUMPBLK_B_TRIM		0x0008
#define RUMPBLK_B_ZERO		0x0010
#define RUMPBLK_B_EXTENTS	0x0020
#define RUMPBLK_B_OPMASK	0x003f
#define RUMPBLK_B_ASYNC		0x0100
#define RUMPBLK_B_FUA		0x0200
#define RUMPBLK_B_NOHOLE	0x0400
#define RUMPBLK_B_LOAN		0x0800	/* in: a READ may lend */
#define RUMPBLK_B_LOANED	0x1000	/* out: it did; see rumpblk_unloan */
#define RUMPBLK_B_LOAN_FD	0x2000	/* in: only as a file descriptor */

struct rumpblk_buf {
	int		b_unit;		/* unit number */
	int		b_flags;	/* RUMPBLK_B_* */
	int64_t		b_blkno;	/* in 512-byte units */
	size_t		b_bcount;	/* bytes requested */
	size_t		b_resid;	/* bytes not moved (out) */
	void		*b_data;	/* caller's buffer */
	int		b_error;	/* 0 or errno (out) */
	void		(*b_iodone)(struct rumpblk_buf *);
	void		*b_private;	/* the caller's, never touched */
	uint64_t	b_opaque[16];	/* library-private; zero it */
};

/*
 * Start an I/O.  The caller zeroes the buffer and sets the public fields;
 * a completed buffer may be submitted again with only its public fields
 * set (strategy initialises the private part itself).
 * Completion: b_error, b_resid are set, then b_iodone runs (on any thread,
 * possibly before rumpblk_strategy returns) or rumpblk_biowait() wakes.
 * Errors in b_error: ENXIO (no such unit), EINVAL (bad flags, byte count
 * not a sector multiple, start past the end), EROFS (write to a read-only
 * unit), EIO (host error or injected fault), host errors.
 */
void rumpblk_strategy(struct rumpblk *, struct rumpblk_buf *);

/* Wait for a buffer without b_iodone to complete; returns b_error. */
int rumpblk_biowait(struct rumpblk_buf *);

/*
 * Give back the bytes a READ with RUMPBLK_B_LOAN was lent: clears
 * RUMPBLK_B_LOANED and restores b_data to the caller's buffer.  Nothing
 * to do (and harmless) for a buffer that was not lent.  Threads: any,
 * once per loan.
 */
void rumpblk_unloan(struct rumpblk *, struct rumpblk_buf *);

/*
 * The lent bytes of bp as a range of a file: *fdp is the unit's host
 * file descriptor (the library's: do not close it), *offp the bytes'
 * offset in it, for sendfile(2) or splice(2), which then reference the
 * page cache rather than copy it.  A read that asked RUMPBLK_B_LOAN_FD
 * may instead be lent as a pipe: *offp is then RUMPBLK_LOAN_PIPE and
 * *fdp the pipe's read end (the library's), which holds exactly the
 * read's bytes, to be spliced out once with a NULL offset.  Valid until
 * rumpblk_unloan.  0, or EINVAL (bp is not lent, or its loan is not of
 * a file or a pipe).
 */
#define RUMPBLK_LOAN_PIPE	UINT64_MAX
int rumpblk_loan_fd(struct rumpblk *, const struct rumpblk_buf *, int *fdp,
    uint64_t *offp);

/*
 * Put off fn(arg) to the end of the completion batch the calling thread
 * is in, from a b_iodone callback: a library thread that completes
 * several buffers in a row (the NBD backing's, one per reply that one
 * receive brought) runs the deferred calls, in order, once it has
 * completed them all and before it waits for more, so that work they
 * share (sending their replies on one socket) is done once.  Returns
 * true if fn will so run, false if the thread is not in a batch (or its
 * batch is full): the caller then does the work itself, now.  Threads:
 * a b_iodone callback's.
 */
bool rumpblk_defer(void (*fn)(void *), void *arg);

/*
 * Plug the calling thread, as a kernel's block layer does: until the
 * matching rumpblk_unplug (they nest), requests it submits may be held
 * back and issued together then (the NBD backing sends them in one
 * sendmsg), and completions it runs put off their rumpblk_defer calls
 * to then as well.  A thread must unplug before it waits for one of its
 * own requests by other means than rumpblk_biowait, which issues what
 * the thread holds back before it sleeps.  Threads: any.
 */
void rumpblk_plug(void);
void rumpblk_unplug(void);

/* Extent query result (RUMPBLK_B_EXTENTS). */
#define RUMPBLK_EXTENT_HOLE	0x1	/* not allocated */
#define RUMPBLK_EXTENT_ZERO	0x2	/* reads as zeroes */
struct rumpblk_extent {
	uint64_t	e_length;	/* bytes */
	uint32_t	e_flags;	/* RUMPBLK_EXTENT_* */
	uint32_t	e_pad;
};
struct rumpblk_extents {
	uint32_t	ex_max;		/* in: slots in ex_ext */
	uint32_t	ex_count;	/* out: slots used */
	struct rumpblk_extent ex_ext[];	/* contiguous from b_blkno */
};

/* ------------------------------------------------------------------ */
/* Character-device path                                               */
/* ------------------------------------------------------------------ */

struct rumpblk_uio {
	struct iovec	*uio_iov;
	int		uio_iovcnt;
	uint64_t	uio_offset;	/* bytes */
	size_t		uio_resid;	/* bytes left */
};

/*
 * Synchronous transfers split into strategy calls of at most
 * RUMPBLK_MAXPHYS bytes.  uio_offset and every iovec length must be sector
 * multiples (EINVAL).  uio is updated as data moves; a transfer stops short
 * at the end of the unit.
 */
int rumpblk_read(struct rumpblk *, int unit, struct rumpblk_uio *, int flags);
int rumpblk_write(struct rumpblk *, int unit, struct rumpblk_uio *, int flags);

/* ------------------------------------------------------------------ */
/* ioctl and disklabel                                                 */
/* ------------------------------------------------------------------ */

#define RUMPBLK_DISKMAGIC	((uint32_t)0x82564557)
#define RUMPBLK_MAXPARTITIONS	16
#define RUMPBLK_DTYPE_RUMPD	19	/* NetBSD's DTYPE_RUMPD */
#define RUMPBLK_FS_UNUSED	0

struct rumpblk_partition {
	uint32_t	p_size;		/* sectors */
	uint32_t	p_offset;	/* sectors */
	uint32_t	p_fsize;
	uint8_t		p_fstype;
	uint8_t		p_frag;
	uint16_t	p_cpg;
};

/* NetBSD's struct disklabel, field for field. */
struct rumpblk_disklabel {
	uint32_t	d_magic;
	uint16_t	d_type;
	uint16_t	d_subtype;
	char		d_typename[16];
	char		d_packname[16];
	uint32_t	d_secsize;
	uint32_t	d_nsectors;
	uint32_t	d_ntracks;
	uint32_t	d_ncylinders;
	uint32_t	d_secpercyl;
	uint32_t	d_secperunit;
	uint16_t	d_sparespertrack;
	uint16_t	d_sparespercyl;
	uint32_t	d_acylinders;
	uint16_t	d_rpm;
	uint16_t	d_interleave;
	uint16_t	d_trackskew;
	uint16_t	d_cylskew;
	uint32_t	d_headswitch;
	uint32_t	d_trkseek;
	uint32_t	d_flags;
	uint32_t	d_drivedata[5];
	uint32_t	d_spare[5];
	uint32_t	d_magic2;
	uint16_t	d_checksum;
	uint16_t	d_npartitions;
	uint32_t	d_bbsize;
	uint32_t	d_sbsize;
	struct rumpblk_partition d_partitions[RUMPBLK_MAXPARTITIONS];
};

struct rumpblk_partinfo {
	struct rumpblk_disklabel	*disklab;
	struct rumpblk_partition	*part;
};

/* ioctl commands. */
#define RUMPBLK_DIOCGDINFO	0x64650001UL	/* struct rumpblk_disklabel */
#define RUMPBLK_DIOCGPART	0x64650002UL	/* struct rumpblk_partinfo */
#define RUMPBLK_DIOCCACHESYNC	0x64650003UL	/* int * (ignored), or NULL */
#define RUMPBLK_DIOCGMEDIASIZE	0x64650004UL	/* uint64_t, bytes */
#define RUMPBLK_DIOCGSECTORSIZE	0x64650005UL	/* unsigned, bytes */

/*
 * DIOCGPART's pointers stay valid until the unit is deregistered.
 * DIOCCACHESYNC makes every completed write of the unit durable.
 * Errors: ENXIO (no such unit), ENOTTY (unknown command), EFAULT (NULL arg
 * where one is needed), the host's sync error.
 */
int rumpblk_ioctl(struct rumpblk *, int unit, unsigned long cmd, void *arg);

/* ------------------------------------------------------------------ */
/* Information and statistics                                          */
/* ------------------------------------------------------------------ */

enum rumpblk_ftype {
	RUMPBLK_FT_REG = 1,
	RUMPBLK_FT_BLK,
	RUMPBLK_FT_CHR,
	RUMPBLK_FT_NBD,			/* an export of a remote NBD server */
	RUMPBLK_FT_RBD,			/* a Ceph RBD image */
};

struct rumpblk_unitinfo {
	const char	*ui_path;	/* valid until deregistered */
	enum rumpblk_ftype ui_ftype;
	uint64_t	ui_offset;	/* bytes into the host file */
	uint64_t	ui_size;	/* bytes */
	uint64_t	ui_hostsize;	/* bytes of the host file */
	unsigned	ui_secsize;	/* bytes */
	int		ui_mode;	/* RUMPBLK_FREAD | RUMPBLK_FWRITE */
	enum rumpblk_backend ui_backend; /* the backend really in use */
	uint64_t	ui_winsize;	/* mmap: window size */
	unsigned	ui_wincount;	/* mmap: window count */
	uint64_t	ui_reserved[8];
};

/* Describe a unit; ENXIO if there is none. */
int rumpblk_unitinfo(struct rumpblk *, int unit, struct rumpblk_unitinfo *);

/*
 * Fault classes, for the per-class firing counters.  SEED is the seed
 * driver's RUMP_BLKFAIL mode; the others are rule classes (DESIGN.md §9).
 */
enum rumpblk_fault_class {
	RUMPBLK_FAULT_SEED = 0,
	RUMPBLK_FAULT_ERROR,
	RUMPBLK_FAULT_CORRUPT,
	RUMPBLK_FAULT_LOST,
	RUMPBLK_FAULT_MISDIRECT,
	RUMPBLK_FAULT_STALE,
	RUMPBLK_FAULT_TORN,
	RUMPBLK_FAULT_DELAY,
	RUMPBLK_FAULT_POWERCUT,		/* "power-cut" (needs a write cache) */
	RUMPBLK_FAULT_NCLASS
};

/*
 * The name of a fault class as rules, logs and counters spell it ("seed",
 * "error", "corrupt", "lost", "misdirect", "stale", "torn", "delay"), or
 * NULL for a value that is not one.  The one table of these names.
 */
const char *rumpblk_fault_class_name(enum rumpblk_fault_class);

#define RUMPBLK_LAT_BUCKETS	48
/*
 * A latency record.  count is exact; timing is sampled (one request in
 * lat_sample of the config, so that the clock is off the common path):
 * timed requests are summed in total_ns, max_ns and hist, where hist[i]
 * counts latencies in [2^i, 2^(i+1)) ns (hist[0] also holds 0 ns, the last
 * bucket everything above).
 */
struct rumpblk_latency {
	uint64_t	count;
	uint64_t	timed;
	uint64_t	total_ns;
	uint64_t	max_ns;
	uint64_t	hist[RUMPBLK_LAT_BUCKETS];
};

/*
 * Counters.  A snapshot makes no promise that counters are consistent with
 * one another while I/O runs.
 */
struct rumpblk_stats {
	uint64_t	io_total;	/* every strategy call */
	uint64_t	io_async;	/* ... with RUMPBLK_B_ASYNC */
	uint64_t	bytes_read;	/* bytes moved */
	uint64_t	bytes_written;
	uint64_t	bytes_written_async;
	uint64_t	win_hits;	/* mmap window found mapped */
	uint64_t	win_busy;	/* "all windows busy" waits */
	uint64_t	win_misses;	/* mmap window had to be mapped */
	uint64_t	faults_injected;
	uint64_t	io_errors;	/* completed with an error */
	uint64_t	flushes;	/* FLUSH buffers and DIOCCACHESYNC */
	struct rumpblk_latency lat_read;
	struct rumpblk_latency lat_write;
	struct rumpblk_latency lat_flush;
	/* --- fields below were added after the first release --- */
	uint64_t	trims;
	uint64_t	zeroes;
	uint64_t	extent_queries;
	uint64_t	bytes_trimmed;
	uint64_t	bytes_zeroed;
	uint64_t	faults_class[RUMPBLK_FAULT_NCLASS]; /* firings by class */
	/* faults_class grew by one (power-cut): reserved shrank by one */
	uint64_t	bytes_lent;	/* of bytes_read: lent (RUMPBLK_B_LOAN) */
	uint64_t	reserved[6];
};

/*
 * Snapshot the counters of one unit, or of the whole instance (the sum over
 * all units ever registered) with unit -1.  An unknown unit gives zeroes.
 */
void rumpblk_stats(struct rumpblk *, int unit, struct rumpblk_stats *);

/*
 * Latency histograms (librumpblk(3), STATISTICS).  Log-linear, as
 * HdrHistogram's: each power-of-two range of nanoseconds from 128 ns to
 * 2^37 ns (137 s) is split into RUMPBLK_HIST_SUB equal sub-buckets, so
 * a bucket is never wider than 1/8 of its values (percentiles within
 * 6.25% once interpolated), in fixed memory.  Bucket i holds latencies
 * in (rumpblk_hist_bound(i - 1), rumpblk_hist_bound(i)] nanoseconds, as
 * Prometheus's "le" buckets do: bucket 0 is [0, 128], the last one
 * everything above 2^37 ns.
 */
#define RUMPBLK_HIST_SUBBITS	3
#define RUMPBLK_HIST_SUB	(1 << RUMPBLK_HIST_SUBBITS)
#define RUMPBLK_HIST_MINSHIFT	7	/* bucket 0 ends at 2^7 ns */
#define RUMPBLK_HIST_OCTAVES	30	/* up to 2^(7 + 30) ns */
#define RUMPBLK_HIST_BUCKETS	(RUMPBLK_HIST_OCTAVES * RUMPBLK_HIST_SUB + 2)

/*
 * One histogram.  h_count is exact: every request it describes.  Only
 * timed requests are in h_buckets, h_sum_ns and h_max_ns: h_timed, the
 * sum of h_buckets, is h_count for requests of a front-end connection
 * (rumpblk_conn_bind) and fault firings, and one request in lat_sample
 * per thread for the others (struct rumpblk_config).
 */
struct rumpblk_hist {
	uint64_t	h_count;	/* requests */
	uint64_t	h_timed;	/* of them timed: the sum of h_buckets */
	uint64_t	h_sum_ns;	/* their latencies, summed */
	uint64_t	h_max_ns;	/* the largest of them */
	uint64_t	h_reserved[4];
	uint64_t	h_buckets[RUMPBLK_HIST_BUCKETS];
};

/* The bucket of a latency of ns nanoseconds. */
unsigned rumpblk_hist_bucket(uint64_t ns);

/* The upper bound (inclusive, ns) of bucket i; UINT64_MAX for the last
 * bucket and past it. */
uint64_t rumpblk_hist_bound(unsigned i);

/*
 * The q-quantile (0 <= q <= 1) of the timed latencies, in ns: the
 * bucket holding the rank ceil(q * h_timed), interpolated linearly
 * inside it (the rank's midpoint), never above h_max_ns; q = 1 gives
 * h_max_ns.  0 when nothing was timed.
 */
uint64_t rumpblk_hist_quantile(const struct rumpblk_hist *, double q);

/*
 * The latency histogram of one operation (one RUMPBLK_B_ op bit: READ,
 * WRITE, FLUSH, TRIM, ZERO or EXTENTS) on a unit, or on the whole
 * instance (every unit ever registered) with unit -1.  A request counts
 * once it completes from the unit's stack (a request refused by the
 * checks of rumpblk_strategy does not); its latency runs from
 * rumpblk_strategy to its completion.  0, ENXIO (no such unit), EINVAL
 * (op).  Threads: any; a snapshot, as rumpblk_stats.
 */
int rumpblk_hist_op(struct rumpblk *, int unit, int op,
    struct rumpblk_hist *);

/*
 * The latency histogram of the requests a fault of class c fired on
 * (each request once per class that fired on it), on a unit or (-1) the
 * instance.  Every such request is timed, from the fault layer to its
 * completion (a delay's included), but a power cut's (counted, not
 * timed: the cut completes it) and seed mode's (timed to the refusal).
 * 0, ENXIO, EINVAL (c).  Threads: any.
 */
int rumpblk_hist_fault(struct rumpblk *, int unit,
    enum rumpblk_fault_class c, struct rumpblk_hist *);

/*
 * Requests in flight on a unit now (submitted, not yet completed), or on
 * every unit with -1: a gauge, read without stopping I/O.  0, ENXIO.
 */
int rumpblk_inflight(struct rumpblk *, int unit, uint64_t *n);

/*
 * Front-end connections: the requests of a client (an NBD connection)
 * counted apart, in a histogram per operation, while the connection
 * lasts; when it closes they go into one sum of every ended connection
 * (RUMPBLK_CONN_ENDED).  A front end opens a record per connection and
 * binds it to each thread that submits the connection's requests; every
 * request such a thread submits to the instance is then timed and
 * counted in the record (two clock reads, nothing next to a socket's
 * round trip).  Memory: a record is about 12 KiB, kept for reuse until
 * the instance goes.
 */
#define RUMPBLK_CONN_LABELMAX	64	/* a label, with its NUL */
#define RUMPBLK_CONN_ENDED	(-1)	/* rumpblk_conn_hist: the ended sum */

struct rumpblk_conn_info {
	int		ci_id;
	int		ci_unit;	/* the unit it uses, as opened */
	char		ci_label[RUMPBLK_CONN_LABELMAX]; /* "nbd#3 unix" */
	uint64_t	ci_reserved[4];
};

/*
 * Open a record for a connection to unit with a label (cut to
 * RUMPBLK_CONN_LABELMAX - 1 bytes); its id in *idp.  0, ENOMEM.
 * Threads: any.
 */
int rumpblk_conn_open(struct rumpblk *, int unit, const char *label,
    int *idp);

/*
 * Count the requests the calling thread submits to this instance from
 * now on in record id (-1: in none).  A thread is bound to one record
 * at a time.  0, ENOENT (no open record id).  Threads: the caller's own
 * binding only.
 */
int rumpblk_conn_bind(struct rumpblk *, int id);

/*
 * Close record id: its counts go into the RUMPBLK_CONN_ENDED sum, the
 * calling thread's binding to it ends, and a request another thread
 * still bound to it submits counts nowhere.  Close once the requests
 * of the connection have completed (a request completing later is
 * counted in the ended sum, or in the record's next connection), and
 * before rumpblk_destroy.  0, ENOENT.  Threads: any.
 */
int rumpblk_conn_close(struct rumpblk *, int id);

/*
 * The open records, in order of id: up to max of them into info, their
 * number into *count (which may exceed max).  0.  Threads: any.
 */
int rumpblk_conn_list(struct rumpblk *, struct rumpblk_conn_info *info,
    size_t max, size_t *count);

/*
 * The histogram of one operation (a RUMPBLK_B_ op bit) of record id, or
 * of every ended connection (RUMPBLK_CONN_ENDED).  h_count is h_timed.
 * 0, ENOENT, EINVAL (op).  Threads: any.
 */
int rumpblk_conn_hist(struct rumpblk *, int id, int op,
    struct rumpblk_hist *);

/* ------------------------------------------------------------------ */
/* Fault rules (DESIGN.md §9; librumpblk(3), FAULT INJECTION)          */
/* ------------------------------------------------------------------ */

#define RUMPBLK_FAULT_IDMAX	32	/* an id, with its NUL */
#define RUMPBLK_FAULT_TEXTMAX	512	/* a rule's text, with its NUL */

/* A rule as listed: its id, its text, its counters. */
struct rumpblk_fault_info {
	char		fi_id[RUMPBLK_FAULT_IDMAX];
	char		fi_text[RUMPBLK_FAULT_TEXTMAX];
	enum rumpblk_fault_class fi_class;
	uint64_t	fi_matches;	/* requests the selectors matched */
	uint64_t	fi_firings;	/* faults injected */
	uint64_t	fi_seed;	/* the seed in use */
	uint64_t	fi_reserved[4];
};

/*
 * Check a rule's text without arming it.  0, or EINVAL with a message
 * naming the rule and the part at fault in errbuf (may be NULL).
 * Threads: any.
 */
int rumpblk_fault_check(const char *rule, char *errbuf, size_t errlen);

/*
 * Arm a rule on a live instance: from the next request on, every unit
 * (or the one of unit=) goes through the rule engine.  The id (given with
 * id= or r1, r2, ... in order of arming) is copied to id (idlen bytes,
 * may be NULL).  A stale rule snapshots its range of each unit now.
 * Errors: EINVAL (malformed rule; errbuf names the rule and the part at
 * fault), EEXIST (the id is armed already), EBUSY (a replay is loaded),
 * ENOMEM, a read error while taking a stale snapshot.  On error nothing
 * is armed.  Threads: any, also while I/O runs.
 */
int rumpblk_fault_add(struct rumpblk *, const char *rule, char *id,
    size_t idlen, char *errbuf, size_t errlen);

/* Disarm one rule; ENOENT if no rule has that id.  Threads: any. */
int rumpblk_fault_del(struct rumpblk *, const char *id);

/* Disarm every rule (and forget a loaded replay).  Threads: any. */
int rumpblk_fault_clear(struct rumpblk *);

/*
 * Describe the armed rules in order of arming: up to max of them into
 * info, their number into *count (which may exceed max).  Threads: any.
 */
int rumpblk_fault_list(struct rumpblk *, struct rumpblk_fault_info *info,
    size_t max, size_t *count);

/* One rule by id; ENOENT if none.  Threads: any. */
int rumpblk_fault_get(struct rumpblk *, const char *id,
    struct rumpblk_fault_info *);

/*
 * The default seed of rules armed without seed=: the config's fail_seed
 * when fail_seed_set, else a random one chosen on first use.  Print it.
 */
uint64_t rumpblk_fault_seed(struct rumpblk *);
/* Set that default for rules armed from now on.  0. */
int rumpblk_fault_set_seed(struct rumpblk *, uint64_t);

/*
 * Put every unit (and every unit registered later) under the rule engine
 * now, even with no rule armed, and count the generation of every
 * request from now on.  Without it, a request is counted only while an
 * armed rule could select it (which costs nothing on requests no rule
 * concerns, and gives the same generations for rules armed before any
 * I/O); a program that arms rules later (a control socket) and wants
 * their fault logs replayable calls this before any I/O.  0 or ENOMEM.
 */
int rumpblk_fault_enable(struct rumpblk *);

/*
 * Write one JSON object per firing, one per line, to f (NULL: stop).  The
 * library serialises writes and flushes after each line; the caller
 * keeps f open until it passes NULL or destroys the instance.  0, ENOMEM.
 */
int rumpblk_fault_log(struct rumpblk *, FILE *f);

/*
 * Load a fault log written by rumpblk_fault_log(): from now on the
 * engine injects exactly the firings it records (matched on unit, op,
 * offset, length and generation) and nothing else; rules cannot be
 * armed until rumpblk_fault_clear().  Call it before any I/O.  Errors:
 * EINVAL (a malformed line; errbuf names the line), EBUSY (rules are
 * armed), ENOMEM, read errors.
 */
int rumpblk_fault_replay(struct rumpblk *, FILE *f, char *errbuf,
    size_t errlen);

/* ------------------------------------------------------------------ */
/* Events (librumpblk(3), EVENTS)                                      */
/* ------------------------------------------------------------------ */

/*
 * A unit was reset: it lost whatever a real disk loses at a power cut,
 * and a client connected to it must not go on as if nothing happened.
 * Front ends drop every connection to that unit when they hear it.  The
 * unit stays registered; clients that connect afterwards see it as it is
 * after the reset.
 */
#define RUMPBLK_EVENT_RESET	1
/*
 * A unit's remote backing lost its server (requests fail with EIO at
 * once; the backing tries to reconnect), or regained it.
 * rumpblk_backing_status says what happened.
 */
#define RUMPBLK_EVENT_REMOTE_DOWN 2
#define RUMPBLK_EVENT_REMOTE_UP	3

/* An event callback: (arg, unit, event). */
typedef void (*rumpblk_event_fn)(void *, int, int);

/*
 * Call fn(arg, unit, event) for every event of the instance from now on,
 * on the thread that raised it and with no library lock held, so fn may
 * call into the library (but not unsubscribe itself).  *idp gets a
 * handle for rumpblk_event_unsubscribe.  0, ENOMEM.  Threads: any.
 */
int rumpblk_event_subscribe(struct rumpblk *, rumpblk_event_fn fn,
    void *arg, int *idp);

/*
 * Stop a subscription.  Once it returns, fn is not running and will not
 * be called again.  0, or ENOENT for an unknown handle.  Threads: any
 * but a callback's own.
 */
int rumpblk_event_unsubscribe(struct rumpblk *, int id);

/*
 * Reset a unit: raise RUMPBLK_EVENT_RESET for it, after the layers that
 * hold volatile state have dropped it.  Returns when every subscriber
 * has been called.  0, ENXIO (no such unit).  Threads: any.
 */
int rumpblk_unit_reset(struct rumpblk *, int unit);

/*
 * One line on a unit's backing into buf (len bytes, NUL-ended): for a
 * remote one, its state (connected, lost and why, reconnecting, down for
 * good) and what the remote offers; for a host file, its kind.  0, or
 * ENXIO.  Threads: any.
 */
int rumpblk_backing_status(struct rumpblk *, int unit, char *buf,
    size_t len);

/* ------------------------------------------------------------------ */
/* Volatile write cache and power loss (librumpblk(3), WRITE CACHE)    */
/* ------------------------------------------------------------------ */

/*
 * Put a volatile write cache of size bytes (at least 64 KiB) on a unit,
 * as a drive with its write cache on: a write is acknowledged once it is
 * in the cache, reads see it, FLUSH (and a FUA or synchronous write)
 * makes every write acknowledged before it durable, and when the cache
 * holds size bytes the oldest writes go to the medium first.  0, ENXIO
 * (no such unit), EINVAL (size), EBUSY (the unit has one), EROFS
 * (read-only unit), ENOMEM.  Threads: any; I/O may run.
 */
int rumpblk_write_cache(struct rumpblk *, int unit, uint64_t size);

/* What a power cut keeps of the writes acknowledged but not durable. */
enum rumpblk_pcmodel {
	RUMPBLK_PC_LOSE = 0,	/* none persists */
	RUMPBLK_PC_KEEP,	/* all persist */
	RUMPBLK_PC_SUBSET,	/* each whole or not at all, in order */
	RUMPBLK_PC_REORDER,	/* a subset, in a seeded order */
	RUMPBLK_PC_SECTORS,	/* each sector of each write on its own */
	RUMPBLK_PC_TORN,	/* a subset, each maybe cut at an atom */
	RUMPBLK_PC_NMODEL
};

/* "lose", "keep", "subset", "reorder", "sectors", "torn", or NULL. */
const char *rumpblk_pcmodel_name(enum rumpblk_pcmodel);

/* A power cut: what to do (in), and what it did (out). */
struct rumpblk_powercut {
	enum rumpblk_pcmodel pc_model;	/* in */
	uint64_t	pc_seed;	/* in: the models' seed */
	uint64_t	pc_atom;	/* in, torn: bytes; 0: the sector size */
	uint64_t	pc_unflushed;	/* out: writes acknowledged, not durable */
	uint64_t	pc_persisted;	/* out: ... that persisted whole */
	uint64_t	pc_lost;	/* out: ... of which nothing persisted */
	uint64_t	pc_torn;	/* out: ... that persisted in part */
	uint64_t	pc_bytes_lost;	/* out: bytes of them not persisted */
	uint64_t	pc_reserved[8];
};

/* Model lose, the instance's fault seed (rumpblk_fault_seed), atom 0. */
void rumpblk_powercut_init(struct rumpblk *, struct rumpblk_powercut *);

/*
 * Parse "model=M,seed=S,atom=N" (each optional; empty: the defaults)
 * over *pc.  0, or EINVAL with a message naming the part at fault.
 */
int rumpblk_powercut_parse(const char *spec, struct rumpblk_powercut *pc,
    char *errbuf, size_t errlen);

/*
 * Cut the power of a unit now.  The unit's cache resolves its writes
 * acknowledged but not durable by pc's model, writes and syncs what
 * persists, and empties; requests in flight get EIO; then
 * RUMPBLK_EVENT_RESET is raised (front ends drop every connection) and
 * the unit serves the post-crash medium.  Fills pc's out fields.  0,
 * ENXIO, ENOTSUP (the unit has no write cache), EIO (the medium failed
 * while writing what persists).  Threads: any but a completion's.
 */
int rumpblk_power_cut(struct rumpblk *, int unit, struct rumpblk_powercut *);

/* A write cache's flush audit and state. */
struct rumpblk_cache_stats {
	uint64_t	cs_size;	/* bytes the cache holds at most */
	uint64_t	cs_dirty_bytes;	/* acknowledged, not durable, now */
	uint64_t	cs_dirty_max;	/* ... at most so far */
	uint64_t	cs_dirty_writes; /* writes, trims, zeroes, now */
	uint64_t	cs_bytes_written; /* acknowledged by the cache */
	uint64_t	cs_bytes_durable; /* made durable: flush, FUA, destage */
	uint64_t	cs_flushes;	/* FLUSH requests */
	uint64_t	cs_fua;		/* FUA (or synchronous) writes */
	uint64_t	cs_destaged;	/* writes made durable for room */
	uint64_t	cs_power_cuts;
	/* from acknowledgement to durability, every write (exact) */
	struct rumpblk_latency cs_durable_lat;
	uint64_t	cs_reserved[8];
};

/* 0, ENXIO, ENOTSUP (no write cache). */
int rumpblk_cache_stats(struct rumpblk *, int unit,
    struct rumpblk_cache_stats *);

/* ------------------------------------------------------------------ */
/* The write log (librumpblk(3), WRITE LOG)                            */
/* ------------------------------------------------------------------ */

/* rumpblk_write_log flags. */
#define RUMPBLK_LOG_NOHASH	0x0001	/* record the base's size, no hash */

/*
 * Record every write (with its data), trim and write-zeroes reaching a
 * unit, and every FLUSH and FUA, to the file path, in the on-disk format
 * of Linux dm-log-writes (xfstests' replay-log reads it), as a layer below
 * the fault rules and above the write cache.  path must not exist, or be
 * an empty file or a block device: a log is never written over.  The
 * unit's content now is the log's base: its size, the hash of its bytes
 * (read through the stack now, unless RUMPBLK_LOG_NOHASH) and base (a
 * name for it, may be NULL) are recorded in the log's first sector.
 * Start the log before I/O: a write running meanwhile may be in the base
 * or in the log.  The log is written out and its entry count updated at
 * every FLUSH, FUA write and mark, and synced when the unit goes.  0,
 * ENXIO, EINVAL, EBUSY (the unit has a log), EROFS (read-only unit),
 * EEXIST (path is a file that is not empty), an error of open(2), or of
 * reading the base.  Threads: any.
 */
int rumpblk_write_log(struct rumpblk *, int unit, const char *path,
    const char *base, int flags);

/*
 * Add a mark entry named name (at most the sector size less 33 bytes)
 * after every write logged so far; written out at once.  0, ENXIO,
 * EINVAL, ENOTSUP (no log), ENAMETOOLONG, or the error that stopped the
 * log.
 */
int rumpblk_log_mark(struct rumpblk *, int unit, const char *name);

struct rumpblk_log_stats {
	uint64_t	ls_entries;	/* every entry, in the file or buffered */
	uint64_t	ls_writes;
	uint64_t	ls_bytes;	/* of the writes */
	uint64_t	ls_trims;
	uint64_t	ls_zeroes;	/* write-zeroes */
	uint64_t	ls_flushes;
	uint64_t	ls_fua;		/* FUA (or synchronous) writes */
	uint64_t	ls_marks;
	uint64_t	ls_file_bytes;	/* the log's size, with the buffer */
	int		ls_error;	/* 0, or the error that stopped it */
	uint64_t	ls_reserved[8];
};

/* 0, ENXIO, ENOTSUP (no log). */
int rumpblk_log_stats(struct rumpblk *, int unit,
    struct rumpblk_log_stats *);

#ifdef __cplusplus
}
#endif

#endif /* RUMPBLK_RUMPBLK_H */
