/*
 * For tests that link the static library and use the host seam
 * (lib/host/host.h, included before this file): a teardown that takes the
 * seam away, since a failed test leaves by longjmp with its seam still
 * installed.
 */
#ifndef RUMPBLK_TESTSEAM_H
#define RUMPBLK_TESTSEAM_H

static int
tl_teardown_seam(void **state)
{
	(void)state;
	rb_host_seam = NULL;
	return 0;
}

#endif
