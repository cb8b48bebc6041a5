/*
 * The write log's on-disk format: Linux dm-log-writes
 * (Documentation/admin-guide/device-mapper/log-writes.rst; the layout
 * xfstests' src/log-writes/ reads), with rumpblk's record of the base
 * image in the unused part of the super sector.  Shared by the log layer
 * (lib/log/layer.c, the writer) and the command's reader (cli/logfile.c);
 * it needs nothing else from either.
 *
 * The file is a sequence of sectors of S bytes, S the unit's sector size
 * (the super says it):
 *
 *   sector 0          the super: struct lw_super, then zeroes, but for
 *                     rumpblk's base record (struct lw_base) at byte 64
 *   then, nr_entries  one entry sector: struct lw_entry, then a mark's
 *   times             name (data_len bytes) or zeroes;
 *                     then, unless LW_DISCARD, nr_sectors sectors of data
 *
 * Every number is little-endian; sector and nr_sectors count sectors of
 * S bytes.  A write is an entry with its data (flags 0, or LW_FUA); a
 * trim one with LW_DISCARD and no data; a write-zeroes a write whose data
 * is zeroes (a hole in the log file: it costs no space there, and any
 * reader replays it exactly, where a discard may not zero); a FLUSH an
 * entry with LW_FLUSH and nr_sectors 0; a mark one with LW_MARK and its
 * name, at most S - 33 bytes.  A reader takes nr_entries from the super
 * and reads no further: the writer updates it at every FLUSH, FUA write
 * and mark, after the entries it counts are in the file.
 *
 * The order of the entries is the order of acknowledgement: a write is
 * logged when it completes, a FLUSH when it is submitted, so a FLUSH
 * follows exactly the writes it covers (the ones acknowledged before it
 * was sent).  (dm-log-writes holds writes back until the next flush; its
 * reader does not depend on that.)
 */
#ifndef RB_LOG_FORMAT_H
#define RB_LOG_FORMAT_H

#include <stdint.h>

#define LW_MAGIC	0x6a736677736872ull	/* dm-log-writes' */
#define LW_VERSION	1ull

#define LW_FLUSH	(1u << 0)
#define LW_FUA		(1u << 1)
#define LW_DISCARD	(1u << 2)
#define LW_MARK		(1u << 3)
#define LW_METADATA	(1u << 4)	/* REQ_META in the kernel; never ours */

/* At byte 0 of sector 0 (28 bytes of fields). */
struct lw_super {
	uint64_t	ls_magic;
	uint64_t	ls_version;
	uint64_t	ls_nr_entries;
	uint32_t	ls_sectorsize;
} __attribute__((packed));

/* At the start of every entry sector. */
struct lw_entry {
	uint64_t	le_sector;
	uint64_t	le_nr_sectors;
	uint64_t	le_flags;
	uint64_t	le_data_len;
} __attribute__((packed));

/*
 * rumpblk's record of the image the log starts from, at byte LW_BASE_AT
 * of sector 0 (dm-log-writes leaves the rest of the sector zero, and its
 * readers skip it).  lb_path holds lb_pathlen bytes of the path the
 * writer was given (cut short, LB_TRUNCATED, if the sector is too small),
 * then a NUL.
 */
#define LW_BASE_AT	64
#define LB_MAGIC	"RBLKBASE"	/* 8 bytes, no NUL */
#define LB_VERSION	1u
#define LB_ZERO		(1u << 0)	/* every byte of the base was zero */
#define LB_HASHED	(1u << 1)	/* lb_hash holds rb_hash128 of it */
#define LB_TRUNCATED	(1u << 2)	/* lb_path is cut short */

struct lw_base {
	char		lb_magic[8];
	uint32_t	lb_version;
	uint32_t	lb_flags;
	uint64_t	lb_size;	/* bytes */
	uint8_t		lb_hash[16];
	uint64_t	lb_time;	/* when logging began, Unix seconds */
	uint16_t	lb_pathlen;
	char		lb_path[];	/* lb_pathlen bytes, then NUL */
} __attribute__((packed));

_Static_assert(sizeof(struct lw_super) == 28, "dm-log-writes super");
_Static_assert(sizeof(struct lw_entry) == 32, "dm-log-writes entry");
_Static_assert(sizeof(struct lw_base) == 50, "lw_base layout");

/* The longest path a sector of secsize bytes holds. */
#define LW_PATHMAX(secsize) \
	((secsize) - LW_BASE_AT - sizeof(struct lw_base) - 1)
/* The longest mark name an entry sector of secsize bytes holds. */
#define LW_MARKMAX(secsize)	((secsize) - sizeof(struct lw_entry) - 1)

#endif
