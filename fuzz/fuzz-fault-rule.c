/*
 * fuzz-fault-rule: the fault rule parser and the fault log parser
 * (DESIGN.md §9) on arbitrary bytes.  The input is tried as a rule
 * (rumpblk_fault_check, then rumpblk_fault_add on an instance with no
 * unit) and as a fault log (rumpblk_fault_replay); neither may crash,
 * leak or read past the input, and a rule that checks must arm (but a
 * power-cut rule, which needs a unit with a write cache).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rumpblk/rumpblk.h>

static struct rumpblk *rb;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rumpblk_config cfg;
	char *text, err[256];
	FILE *f;

	if (rb == NULL) {
		rumpblk_config_init(&cfg);
		if (rumpblk_create(&cfg, &rb) != 0)
			abort();
	}
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	/*
	 * A rule that checks arms, but for an id armed already, and a
	 * power-cut rule here, where no unit has a write cache (refused
	 * at arming, as documented).
	 */
	if (rumpblk_fault_check(text, err, sizeof(err)) == 0) {
		if (rumpblk_fault_add(rb, text, NULL, 0, err, sizeof(err)) != 0 &&
		    strstr(err, "armed already") == NULL &&
		    strstr(err, "power-cut needs") == NULL)
			abort();	/* checked but refused */
		rumpblk_fault_clear(rb);
	}
	if (size > 0 && (f = fmemopen(text, size, "r")) != NULL) {
		if (rumpblk_fault_replay(rb, f, err, sizeof(err)) == 0)
			rumpblk_fault_clear(rb);
		fclose(f);
	}
	free(text);
	return 0;
}
