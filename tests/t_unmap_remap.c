// SPDX-License-Identifier: MIT
/*
 * t_unmap_remap.c - the library never unmaps what the program already unmapped: after the
 * program unmaps (all of a region, part of it, or a range that starts before it) and maps
 * something new at the same address (one mmap MAP_FIXED), pagein_space_free leaves the new mapping alone and still
 * unmaps the rest of the region. Accessors on the unmapped pages fail -ENOENT, on the others
 * they work. Both front-ends (UNMAP events are read by a reader or the event thread).
 */
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define PAGES 16
#define SIZE (PAGES * 4096ull)
#define SEED 29

static bool mapped(void *p, uint64_t len)
{
	return msync(p, len, MS_ASYNC) == 0;
}

/*
 * Map new memory at exactly p, over what is there, marked with tag. MAP_FIXED unmaps the old
 * pages and maps the new ones in one step (the kernel sends the same UNMAP event as munmap): a
 * munmap followed by a second mmap would leave a hole that another thread (or the sanitizer's
 * allocator) can take first.
 */
static uint64_t *map_at(uint8_t *p, uint64_t len, uint64_t tag)
{
	uint64_t *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			   -1, 0);

	T_ASSERT(q == (uint64_t *)p);
	q[0] = tag;
	return q;
}

static void check_new(const char *what, uint8_t *p, uint64_t len, uint64_t tag)
{
	if (!mapped(p, len) || *(volatile uint64_t *)p != tag) {
		printf("FAIL %s: the program's new mapping at %p was unmapped by pagein_space_free\n",
		       what, (void *)p);
		exit(1);
	}
	munmap(p, len);
}

static void run(enum pagein_frontend fe)
{
	struct pagein_config cfg;
	struct t_space T;
	uint8_t *h, *before;
	uint64_t got;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.log = t_log;

	/* the whole region */
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	h = T.host;
	map_at(h, SIZE, 0xfeed);
	T_EQ(pagein_read(T.s, 0, &got, 8), -ENOENT);
	t_space_free(&T);
	check_new("whole region", h, SIZE, 0xfeed);

	/* pages 4..7 of it */
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	h = T.host;
	map_at(h + 4 * 4096, 4 * 4096, 0xbeef);
	T_EQ(pagein_read(T.s, 5 * 4096, &got, 8), -ENOENT);
	T_EQ(pagein_read(T.s, 9 * 4096, &got, 8), 0);
	T_EQ(got, t_word(SEED, 9 * 4096));
	T_EQ(*(volatile uint64_t *)(h + 12 * 4096), t_word(SEED, 12 * 4096));
	t_space_free(&T);
	check_new("partial unmap", h + 4 * 4096, 4 * 4096, 0xbeef);
	if (mapped(h, 4096) || mapped(h + 8 * 4096, 8 * 4096)) {
		printf("FAIL partial unmap: the rest of the region was left mapped\n");
		exit(1);
	}

	/* an unmap that starts one page before the region and ends in its page 2 */
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	h = T.host;
	before = mmap(h - 4096, 4096, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (before != h - 4096) {
		printf("  (the page before the region is taken: unmap-from-before not tried)\n");
		if (before != MAP_FAILED)
			munmap(before, 4096);
		t_space_free(&T);
		return;
	}
	map_at(h - 4096, 3 * 4096, 0xcafe);
	T_EQ(pagein_read(T.s, 4096, &got, 8), -ENOENT);
	T_EQ(pagein_read(T.s, 2 * 4096, &got, 8), 0);
	t_space_free(&T);
	check_new("unmap from before the region", h - 4096, 3 * 4096, 0xcafe);
	printf("  %s: whole, partial and from-before unmaps kept the program's new mappings\n",
	       pagein_frontend_name(fe));
}

int main(void)
{
	t_require_uffd();
	alarm(30);
	run(PAGEIN_FRONTEND_SELF);
	run(PAGEIN_FRONTEND_HANDLER);
	t_pass("unmapped regions are never unmapped again");
}
