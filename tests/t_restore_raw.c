// SPDX-License-Identifier: MIT
/*
 * t_restore_raw.c - `pagein restore --raw FILE --layout ...`: a raw memory file with holes and
 * zero pages, in two regions at distant guest addresses, restores with every region verified
 * against the file; --record-ws then --prefetch-ws: the second restore takes fewer faults and
 * says how many pages it prefetched; a file shorter than its layout, a bad layout, --raw
 * without --layout and --record-ws with --prefetch-ws are usage errors (exit 2) with a reason.
 */
#include <fcntl.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (8ull << 20)
#define RUN_MS 60000

static const char *bin;
static char out[1 << 16], err[1 << 16];

static int run(char *const *args)
{
	return t_exit_code(t_run_status(bin, args, out, sizeof(out), err, sizeof(err), RUN_MS,
					NULL));
}

/* The number after key in out ("faults 123"), or -1. */
static long num_after(const char *key)
{
	const char *p = strstr(out, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

int main(int argc, char **argv)
{
	char img[] = "/tmp/t_restore_raw_XXXXXX", ws[64];
	uint8_t *buf;
	long f1, f2, ws_pages, pre, first;
	int fd;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	fd = mkstemp(img);
	T_ASSERT(fd >= 0);
	buf = malloc(SIZE);
	T_ASSERT(buf);
	t_fill(buf, 0, SIZE, 71, 5);
	/* zero pages stay holes: written page by page, the rest skipped */
	for (uint64_t off = 0; off < SIZE; off += 4096)
		if ((off >> 12) % 5)
			T_EQ(pwrite(fd, buf + off, 4096, (off_t)off), 4096);
	T_EQ(ftruncate(fd, (off_t)SIZE), 0);
	close(fd);
	free(buf);
	snprintf(ws, sizeof(ws), "%s.ws", img);

	{
		char *a[] = { "pagein", "restore", "--raw", img, "--layout",
			      "0+4M,0x100000000+4M", "-w", "rand", "--no-fill", "-q",
			      "--record-ws", ws, NULL };

		T_EQ(run(a), 0);
		T_ASSERT(strstr(out, "every region verified") && strstr(out, "== file: verified"));
		T_ASSERT(strstr(out, "working set recorded"));
		f1 = num_after("faults ");
	}
	{
		char *a[] = { "pagein", "restore", "--raw", img, "--layout",
			      "0+4M,0x100000000+4M", "-w", "rand", "--no-fill", "-q",
			      "--prefetch-ws", ws, NULL };

		T_EQ(run(a), 0);
		T_ASSERT(strstr(out, "every region verified"));
		T_ASSERT(strstr(out, "prefetched"));
		f2 = num_after("faults ");
		/* every page of the set is accounted for: prefetched, or there first (the
		 * workload starts with the prefetch, so how many of each is the scheduler's) */
		ws_pages = num_after("working set: ");
		pre = num_after("pages, ");
		first = num_after("prefetched (");
	}
	printf("  recording restore: %ld faults; prefetching restore: %ld faults; set of %ld pages: "
	       "%ld prefetched, %ld there first\n", f1, f2, ws_pages, pre, first);
	T_ASSERT(f1 > 0 && f2 >= 0 && ws_pages > 0 && pre >= 0 && first >= 0);
	T_EQ(pre + first, ws_pages);
	{
		char *a[] = { "pagein", "restore", "--raw", img, "--layout", "0+4M,0x100000000+8M",
			      "-q", NULL };

		T_EQ(run(a), 2);
		T_ASSERT(strstr(err, "shorter than its layout") && strstr(err, "region 1"));
		printf("  refused: %s", err);
	}
	{
		char *a[] = { "pagein", "restore", "--raw", img, "--layout", "0+4M;8M", "-q", NULL };

		T_EQ(run(a), 2);
		T_ASSERT(strstr(err, "--layout"));
		printf("  refused: %s", err);
	}
	{
		char *a[] = { "pagein", "restore", "--raw", img, "-q", NULL };

		T_EQ(run(a), 2);
		T_ASSERT(strstr(err, "--raw and --layout go together"));
	}
	{
		char *a[] = { "pagein", "restore", "--raw", img, "--layout", "0+8M", "--record-ws",
			      ws, "--prefetch-ws", ws, NULL };

		T_EQ(run(a), 2);
	}
	unlink(ws);
	unlink(img);
	t_pass("restore_raw: raw files restore verified; working sets cut the faults");
}
