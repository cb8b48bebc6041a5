/*
 * test-ioctl-disklabel: DIOCGDINFO gives NetBSD's struct disklabel with
 * both magics, type name "rumpd", pack name "fictitious", the sector size,
 * d_secperunit in whole sectors (clamped to UINT32_MAX above 2 TiB while
 * DIOCGMEDIASIZE stays exact: see test-unit-large), one partition
 * covering the unit, and a checksum that an independent XOR of the
 * 16-bit words from d_magic to &d_partitions[d_npartitions] brings to 0.  DIOCGPART points at the
 * label and its partition.  The struct has NetBSD's layout.
 */
#include "testlib.h"

static void
layout(void **state)
{
	(void)state;
	tl_eq(offsetof(struct rumpblk_disklabel, d_magic), 0);
	tl_eq(offsetof(struct rumpblk_disklabel, d_typename), 8);
	tl_eq(offsetof(struct rumpblk_disklabel, d_packname), 24);
	tl_eq(offsetof(struct rumpblk_disklabel, d_secsize), 40);
	tl_eq(offsetof(struct rumpblk_disklabel, d_secperunit), 60);
	tl_eq(offsetof(struct rumpblk_disklabel, d_rpm), 72);
	tl_eq(offsetof(struct rumpblk_disklabel, d_flags), 88);
	tl_eq(offsetof(struct rumpblk_disklabel, d_magic2), 132);
	tl_eq(offsetof(struct rumpblk_disklabel, d_checksum), 136);
	tl_eq(offsetof(struct rumpblk_disklabel, d_npartitions), 138);
	tl_eq(offsetof(struct rumpblk_disklabel, d_partitions), 148);
	tl_eq(sizeof(struct rumpblk_partition), 16);
	tl_eq(sizeof(struct rumpblk_disklabel), 148 + 16 * 16);
	tl_eq(RUMPBLK_DISKMAGIC, 0x82564557u);
}

/* Check a label for a unit of size bytes with secsize-byte sectors. */
static void
check_label(const struct rumpblk_disklabel *dl, uint64_t size,
    unsigned secsize)
{
	uint64_t secs = size / secsize;
	uint32_t want = secs > UINT32_MAX ? UINT32_MAX : (uint32_t)secs;
	struct rumpblk_disklabel copy = *dl;

	tl_eq(dl->d_magic, 0x82564557u);
	tl_eq(dl->d_magic2, 0x82564557u);
	tl_eq(strncmp(dl->d_typename, "rumpd", 16), 0);
	tl_eq(strncmp(dl->d_packname, "fictitious", 16), 0);
	tl_eq(dl->d_secsize, secsize);
	tl_eq(dl->d_secperunit, want);
	tl_eq(dl->d_npartitions, 1);
	tl_eq(dl->d_partitions[0].p_offset, 0);
	tl_eq(dl->d_partitions[0].p_size, want);
	tl_eq(tl_label_xor(dl), 0);
	/* A changed field breaks the checksum. */
	copy.d_secperunit ^= 1;
	tl_true(tl_label_xor(&copy) != 0);
}

static void
label_of(struct rumpblk *rb, int unit, uint64_t size, unsigned secsize)
{
	struct rumpblk_disklabel dl;
	struct rumpblk_partinfo pi;
	uint64_t media;
	unsigned ss;

	memset(&dl, 0xcc, sizeof(dl));
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, &dl), 0);
	check_label(&dl, size, secsize);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, size);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGSECTORSIZE, &ss), 0);
	tl_eq(ss, secsize);
	memset(&pi, 0, sizeof(pi));
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGPART, &pi), 0);
	tl_true(pi.disklab != NULL);
	tl_true(pi.part == &pi.disklab->d_partitions[0]);
	check_label(pi.disklab, size, secsize);
	tl_eq(memcmp(pi.disklab, &dl, sizeof(dl)), 0);
}

static void
small_units(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char *img = tl_image("label.img", 1 << 20, 0);
	int u;

	(void)state;
	rb = tl_create(NULL);
	u = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	label_of(rb, u, 1 << 20, 512);
	tl_eq(2048, (1 << 20) / 512);
	/* Odd size: whole sectors only. */
	u = tl_register(rb, img, 16000, 32000);
	label_of(rb, u, 32000, 512);
	u = tl_register(rb, img, 0, 511);
	label_of(rb, u, 511, 512);
	tl_eq(rumpblk_destroy(rb), 0);

	tl_config(&cfg);
	cfg.sectshift = 12;
	rb = tl_create(&cfg);
	u = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	label_of(rb, u, 1 << 20, 4096);
	u = tl_register(rb, img, 0, 10000);
	label_of(rb, u, 10000, 4096);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layout),
		cmocka_unit_test(small_units),
	};

	return tl_main(tests, NULL, NULL);
}
