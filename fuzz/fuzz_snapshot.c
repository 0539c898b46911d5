// SPDX-License-Identifier: MIT
/*
 * fuzz_snapshot.c - libFuzzer target for the snapshot header reader (lib/snapshot.c,
 * pagein_snapshot_regions), a file a server is told to serve. The input is the file (in a memfd,
 * read through /proc/self/fd). When the first byte is odd, the header's own digest is fixed up
 * first, so the fuzzer gets past that check to the region table's rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "pagein.h"

#define HDR 4096
#define DIGEST_OFF 24 /* magic 8, version 4, nregions 4, file_size 8, then hdr_digest */
#define HDR_STRUCT (32 + 64 * 40) /* struct snap_hdr: what the digest covers */

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pagein_region_desc regs[64];
	uint8_t *buf;
	int n, i;

	if (fd < 0) {
		fd = memfd_create("fuzz_snapshot", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (size < 1 || size > (1u << 20))
		return 0;
	buf = malloc(size - 1 + 1);
	if (!buf)
		abort();
	memcpy(buf, data + 1, size - 1);
	if ((data[0] & 1) && size - 1 >= HDR_STRUCT) {
		uint64_t d;

		memset(buf + DIGEST_OFF, 0, 8);
		d = XXH3_64bits(buf, HDR_STRUCT);
		memcpy(buf + DIGEST_OFF, &d, 8);
	}
	if (ftruncate(fd, 0) || pwrite(fd, buf, size - 1, 0) != (ssize_t)(size - 1))
		abort();
	/* a file may also claim to be larger than it is: holes are zero */
	if (data[0] & 2)
		(void)!ftruncate(fd, (off_t)(size - 1) + ((off_t)data[0] << 16));
	n = pagein_snapshot_regions(path, regs, 64);
	if (n > 64)
		abort();
	for (i = 0; i < n; i++)
		if (!regs[i].size || regs[i].size % 4096)
			abort();
	free(buf);
	return 0;
}
