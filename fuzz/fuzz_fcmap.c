// SPDX-License-Identifier: MIT
/*
 * fuzz_fcmap.c - libFuzzer target for the Firecracker region JSON (lib/fcmap.c): the array of
 * GuestRegionUffdMapping objects a VMM sends with its userfaultfd, untrusted bytes from another
 * process. The input is the message: pi_fc_parse reads it as the handler does (the whole text,
 * not NUL-terminated, so ASan sees any read past its end) and pi_fc_json_end frames it as the
 * hand-off socket does. Besides ASan/UBSan, what is checked:
 *  - a refusal says why (err non-empty); a success leaves err empty;
 *  - every region accepted obeys the documented rules (page size 4 KiB or 2 MiB, base, size and
 *    offset multiples of it, non-empty, no wrap, no overlap in the VMM or in the file);
 *  - a text pi_fc_parse accepts is one that pi_fc_json_end calls complete, ending where the
 *    array ends with only blanks after it (else the socket would wait for ever for a message
 *    the parser takes, or cut one short).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm.h"

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void check_accepted(const struct pi_fc_region *r, int n)
{
	int i, j;

	for (i = 0; i < n; i++) {
		uint64_t ps = r[i].page_size;

		if ((ps != 4096 && ps != 2ull << 20) || !r[i].size || r[i].base % ps ||
		    r[i].size % ps || r[i].offset % ps || r[i].base + r[i].size < r[i].base ||
		    r[i].offset + r[i].size < r[i].offset)
			abort();
		if (!r[i].page_size_given && ps != 4096)
			abort();
		for (j = 0; j < i; j++)
			if ((r[i].base < r[j].base + r[j].size && r[j].base < r[i].base + r[i].size) ||
			    (r[i].offset < r[j].offset + r[j].size &&
			     r[j].offset < r[i].offset + r[i].size))
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pi_fc_region r[PI_FC_MAX_REGIONS];
	const char *json = (const char *)data;
	char err[PI_ERRLEN];
	long end;
	size_t i;
	int n;

	memset(err, 'x', sizeof(err));
	n = pi_fc_parse(json, size, r, PI_FC_MAX_REGIONS, err, sizeof(err));
	if (!memchr(err, 0, sizeof(err)))
		abort(); /* not NUL-terminated */
	if (n < 0 && (!err[0] || (n != -EINVAL && n != -E2BIG)))
		abort();
	if (n == 0 || n > (int)PI_FC_MAX_REGIONS)
		abort();
	end = pi_fc_json_end(json, size);
	if (end > (long)size)
		abort();
	if (n > 0) {
		if (err[0])
			abort();
		check_accepted(r, n);
		if (end <= 0)
			abort();
		for (i = (size_t)end; i < size; i++)
			if (!blank(json[i]))
				abort();
	}
	/* a small caller's limit: -E2BIG, never a write past it */
	if (n > 1) {
		struct pi_fc_region *one = malloc(sizeof(*one));

		if (!one || pi_fc_parse(json, size, one, 1, err, sizeof(err)) != -E2BIG || !err[0])
			abort();
		free(one);
	}
	return 0;
}
