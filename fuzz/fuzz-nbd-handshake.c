/*
 * fuzz-nbd-handshake: libFuzzer target for the NBD server's handshake and
 * option parser.  The input is everything a client sends after the
 * server's greeting: client flags, then options (EXPORT_NAME, LIST, INFO,
 * GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT, STARTTLS, unknown ones),
 * and, if the handshake ends, requests.  The servers offer TLS
 * (fuzz-nbd.c: --tls=on with a PSK), so STARTTLS takes the path that
 * answers NBD_REP_ACK and starts a TLS handshake, besides its refusals
 * (data with it, bytes pipelined after it).  The first byte picks the
 * read-only server when its low bit is set; the rest goes to the server
 * unchanged.
 *
 * Build with meson -Dfuzz=true and clang (fuzz/run-smoke.sh does it).
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz-nbd.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_nbd_run(NULL, 0, data + 1, size - 1, data[0] & 1);
	return 0;
}
