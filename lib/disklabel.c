/*
 * The fictitious disklabel every unit reports.
 *
 * The seed wrote the unit's size in bytes into d_secperunit, left the
 * checksum zero and put the whole-disk partition at the index of the
 * unit.  Here d_secperunit counts whole sectors (clamped to UINT32_MAX
 * above 2 TiB, as NetBSD labels are; DIOCGMEDIASIZE stays exact), the
 * checksum is NetBSD's dkcksum(), and partition 0 covers the unit.
 */
#include <string.h>

#include "internal.h"

static uint32_t
clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/*
 * NetBSD's dkcksum(): the XOR of the 16-bit words from d_magic up to the
 * end of the partitions in use.  Over a label whose checksum is set, the
 * result is 0.
 */
uint16_t
rb_label_cksum(const struct rumpblk_disklabel *lp)
{
	const uint16_t *start = (const void *)lp;
	const uint16_t *end;
	unsigned np = lp->d_npartitions;
	uint16_t sum = 0;

	if (np > RUMPBLK_MAXPARTITIONS)
		np = RUMPBLK_MAXPARTITIONS;
	end = (const void *)&lp->d_partitions[np];
	while (start < end)
		sum ^= *start++;
	return sum;
}

void
rb_label_make(struct rumpblk_disklabel *lp, uint64_t size, unsigned sectshift)
{
	uint32_t secs = clamp32(size >> sectshift);

	memset(lp, 0, sizeof(*lp));
	lp->d_magic = RUMPBLK_DISKMAGIC;
	lp->d_type = RUMPBLK_DTYPE_RUMPD;
	strncpy(lp->d_typename, "rumpd", sizeof(lp->d_typename));
	strncpy(lp->d_packname, "fictitious", sizeof(lp->d_packname));
	lp->d_secsize = 1u << sectshift;
	lp->d_nsectors = secs;
	lp->d_ntracks = 1;
	lp->d_ncylinders = 1;
	lp->d_secpercyl = secs;
	lp->d_secperunit = secs;
	lp->d_rpm = 11;
	lp->d_interleave = 1;
	lp->d_flags = 0;
	lp->d_magic2 = RUMPBLK_DISKMAGIC;
	lp->d_npartitions = 1;
	lp->d_partitions[0].p_size = secs;
	lp->d_partitions[0].p_offset = 0;
	lp->d_partitions[0].p_fstype = RUMPBLK_FS_UNUSED;
	lp->d_checksum = 0;
	lp->d_checksum = rb_label_cksum(lp);
}
