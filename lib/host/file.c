/*
 * The host-file backing: a regular file, a block device or a character
 * device of the host, with an offset/size window, as the seed's driver
 * registered them (DESIGN.md §4).  It owns the host descriptor and the
 * file's identity; the host backends (lib/backend) do the I/O on it, and
 * which one does is chosen per unit (rb_backend_open).
 *
 * What it is not: the I/O itself, or the decision of which backend is
 * best (backend.c).  The trade-off it keeps from the seed: a unit holds
 * one descriptor opened read-write where the host allows, read-only
 * otherwise, so that registering never fails for want of write access.
 */
#include <errno.h>
#include <string.h>

#include "../internal.h"
#include "host.h"

/* "file:PATH" names a host file whatever PATH looks like. */
static const char *
spec_path(const char *spec)
{
	return strncmp(spec, "file:", 5) == 0 ? spec + 5 : spec;
}

static int
hostfile_open(struct rumpblk *rb, const char *spec,
    const struct rumpblk_unit_opts *o, struct rb_backing **bkp)
{
	const char *path = spec_path(spec);
	struct rb_fileinfo fi;
	struct rb_hostfile *hf;
	uint64_t off = o->uo_offset, size = o->uo_size, usize;
	int error;

	(void)rb;
	/* Devices report their size only when open: fileinfo opens them. */
	if ((error = rb_host_fileinfo(path, &fi)) != 0)
		return error;
	if (size == RUMPBLK_SIZENOTSET) {
		if (fi.fi_ftype == RUMPBLK_FT_CHR && fi.fi_size == 0)
			return EOPNOTSUPP;
		/* The seed asserted offset < flen; we refuse instead. */
		if (off >= fi.fi_size)
			return EINVAL;
		usize = fi.fi_size - off;
	} else {
		/*
		 * An unsizable character device takes the caller's word;
		 * everything else must fit.
		 */
		if (!(fi.fi_ftype == RUMPBLK_FT_CHR && fi.fi_size == 0) &&
		    (off > fi.fi_size || size > fi.fi_size - off))
			return EINVAL;
		if (off + size < off)
			return EINVAL;
		usize = size;
	}
	if ((hf = calloc(1, sizeof(*hf))) == NULL)
		return ENOMEM;
	if ((hf->hf_bk.bk_spec = strdup(path)) == NULL) {
		error = ENOMEM;
		goto free_hf;
	}
	if ((error = rb_host_open(path, o->uo_readonly ? RB_HOST_RDONLY : 0,
	    &hf->hf_fd, &hf->hf_bk.bk_mode)) != 0)
		goto free_spec;
	hf->hf_bk.bk_ops = &rb_hostfile_ops;
	hf->hf_bk.bk_off = off;
	hf->hf_bk.bk_size = usize;
	hf->hf_bk.bk_total = fi.fi_size;
	hf->hf_bk.bk_ftype = fi.fi_ftype;
	hf->hf_dev = fi.fi_dev;
	hf->hf_ino = fi.fi_ino;
	*bkp = &hf->hf_bk;
	return 0;

free_spec:
	free(hf->hf_bk.bk_spec);
free_hf:
	free(hf);
	return error;
}

static bool
hostfile_same(const struct rb_backing *a, const struct rb_backing *b)
{
	const struct rb_hostfile *x = (const struct rb_hostfile *)a;
	const struct rb_hostfile *y = (const struct rb_hostfile *)b;

	return x->hf_dev == y->hf_dev && x->hf_ino == y->hf_ino &&
	    a->bk_off == b->bk_off && a->bk_size == b->bk_size;
}

void
rb_bkey_make(const char *spec, struct rb_bkey *k)
{
	struct rb_fileinfo fi;

	memset(k, 0, sizeof(*k));
	k->k_spec = spec_path(spec);
	if (rb_host_fileinfo(k->k_spec, &fi) == 0) {
		k->k_have_id = true;
		k->k_dev = fi.fi_dev;
		k->k_ino = fi.fi_ino;
	}
}

/* By identity when the named file exists, else by name. */
static bool
hostfile_named(const struct rb_backing *bk, const struct rb_bkey *k)
{
	const struct rb_hostfile *hf = (const struct rb_hostfile *)bk;

	if (k->k_have_id)
		return hf->hf_dev == k->k_dev && hf->hf_ino == k->k_ino;
	return strcmp(bk->bk_spec, k->k_spec) == 0;
}

static int
hostfile_stage(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	return rb_backend_open(u, kind, stp);
}

static int
hostfile_close(struct rb_backing *bk)
{
	struct rb_hostfile *hf = (struct rb_hostfile *)bk;
	int error;

	error = rb_host_close(hf->hf_fd);
	free(bk->bk_spec);
	free(hf);
	return error;
}

const struct rb_backing_ops rb_hostfile_ops = {
	.bo_name = "file",
	.bo_open = hostfile_open,
	.bo_same = hostfile_same,
	.bo_named = hostfile_named,
	.bo_stage = hostfile_stage,
	.bo_close = hostfile_close,
};
