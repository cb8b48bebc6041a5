/*
 * Shared harness of the NBD fuzz targets: one rumpblk instance with a
 * small scratch image, two servers on it (read-write and read-only), and
 * fuzz_nbd_run(), which feeds a byte string to the server as a client
 * would, through a socketpair, into nbd_serve_fd() in the calling thread.
 *
 * This is not a model of a client: the bytes go in as they are, and a
 * pump thread writes them while it reads and discards every reply, so
 * that the server never blocks on a full socket.  When the input is
 * written the pump shuts down its sending side, so the server sees the
 * client leave and nbd_serve_fd() returns.  A server that hangs on an
 * input is caught by libFuzzer's -timeout.
 */
#ifndef RUMPBLK_FUZZ_NBD_H
#define RUMPBLK_FUZZ_NBD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Serve data (size bytes) on a fresh connection of the read-write server,
 * or of the read-only one; prefix (plen bytes, may be 0) goes first.
 */
void	fuzz_nbd_run(const uint8_t *prefix, size_t plen,
	    const uint8_t *data, size_t size, int read_only);

#endif /* RUMPBLK_FUZZ_NBD_H */
