// SPDX-License-Identifier: MIT
/*
 * t_ws_prefetch.c - working-set prefetch into a pagein space (pagein_ws_prefetch): a set
 * written from the image is installed without one source fetch for its pages, every byte
 * right, zero pages as zero pages; pages a fault brought first are left alone (faults keep
 * priority); a set of another image (-ESTALE) or a damaged one (-EIO) installs nothing. Both
 * front-ends.
 * Usage: t_ws_prefetch [self|handler]   (none: both)
 */
#include <fcntl.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-vmm.h"

#define SIZE (4ull << 20)
#define SEED 53
#define ID 0x5eed

static void run(enum pagein_frontend fe)
{
	char path[] = "/tmp/t_ws_pf_XXXXXX", err[256];
	struct pagein_ws_stats st = { .size = sizeof(st) };
	struct pagein_config cfg;
	struct t_space T;
	uint64_t *set, n = 0, i, present, total, before[SIZE / 4096];
	volatile uint64_t sink = 0;
	char bad[64];
	uint8_t b;
	off_t end;
	int fd;

	fd = mkstemp(path);
	T_ASSERT(fd >= 0);
	close(fd);
	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.fault_around = 1;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	for (i = 0; i < SIZE / 4096; i += 9) /* zero pages: stored as zero runs */
		memset((uint8_t *)T.img + i * 4096, 0, 4096);

	/* the set: every 3rd page, backwards (touch order is not address order) */
	set = malloc(sizeof(*set) * (SIZE / 4096));
	T_ASSERT(set);
	for (i = SIZE / 4096; i-- > 0;)
		if (i % 3 == 0)
			set[n++] = i * 4096;
	T_EQ(pagein_ws_write(path, set, n, 4096, ID, T.src, err, sizeof(err)), 0);
	/* a damaged copy: one bit flipped in its page data */
	snprintf(bad, sizeof(bad), "%s.bad", path);
	T_EQ(pagein_ws_write(bad, set, n, 4096, ID, T.src, err, sizeof(err)), 0);
	fd = open(bad, O_RDWR);
	T_ASSERT(fd >= 0);
	end = lseek(fd, 0, SEEK_END) - 100;
	T_ASSERT(pread(fd, &b, 1, end) == 1);
	b ^= 1;
	T_ASSERT(pwrite(fd, &b, 1, end) == 1);
	close(fd);
	/* the writes fetched from the source too: count from here */
	for (i = 0; i < SIZE / 4096; i++)
		before[i] = t_src_fetches(&T.ts, i * 4096);
	T_EQ(pagein_space_start(T.s), 0);

	/* a fault first: page 0 (in the set) comes from the source, the prefetch leaves it */
	sink += *(volatile uint64_t *)T.host;

	/* another image's set, then a damaged one: nothing installed */
	T_EQ(pagein_ws_prefetch(T.s, path, ID + 1, &st, err, sizeof(err)), -ESTALE);
	printf("  refused: %s\n", err);
	T_EQ(pagein_ws_prefetch(T.s, bad, ID, &st, err, sizeof(err)), -EIO);
	printf("  refused: %s\n", err);
	unlink(bad);
	pagein_residency(T.s, &present, &total);
	T_EQ(present, 1);

	T_EQ(pagein_ws_prefetch(T.s, path, ID, &st, err, sizeof(err)), 0);
	printf("  prefetched %llu of %llu pages (%llu skipped), %llu bytes in one read\n",
	       (unsigned long long)st.installed, (unsigned long long)st.pages,
	       (unsigned long long)st.skipped, (unsigned long long)st.bytes_read);
	T_EQ(st.pages, n);
	T_EQ(st.skipped, 1);  /* page 0, faulted in first */
	T_EQ(st.installed, n - 1);
	pagein_residency(T.s, &present, &total);
	T_EQ(present, n);
	/* no source fetch for the prefetched pages; every byte right (zero pages included) */
	for (i = 0; i < n; i++) {
		unsigned got = t_src_fetches(&T.ts, set[i]) - (unsigned)before[set[i] / 4096];

		if (got != (set[i] == 0 ? 1u : 0u)) {
			fprintf(stderr, "FAIL: page 0x%llx was fetched %u times\n",
				(unsigned long long)set[i], got);
			exit(1);
		}
	}
	T_EQ(t_check(T.host, 0, SIZE, SEED, 9), UINT64_MAX);
	/* (a handler thread marks a page present just after its install woke the toucher) */
	T_EQ(pagein_wait_complete(T.s, 5000), 0);
	t_space_free(&T);
	unlink(path);
	free(set);
	(void)sink;
	printf("  %s: ok\n", pagein_frontend_name(fe));
}

int main(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "self") && strcmp(argv[1], "handler"))) {
		fprintf(stderr, "usage: %s [self|handler]   (none: both)\n", argv[0]);
		return 1;
	}
	t_require_uffd();
	alarm(60);
	if (argc == 1 || !strcmp(argv[1], "self"))
		run(PAGEIN_FRONTEND_SELF);
	if (argc == 1 || !strcmp(argv[1], "handler"))
		run(PAGEIN_FRONTEND_HANDLER);
	t_pass("ws_prefetch: working sets install without source fetches, faults first");
}
