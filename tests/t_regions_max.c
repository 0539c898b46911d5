// SPDX-License-Identifier: MIT
/*
 * t_regions_max.c - a space holds PAGEIN_MAX_REGIONS (64, what the protocol and the snapshot
 * format allow) regions, every one served; one more is refused with -ENOSPC.
 */
#include <unistd.h>

#include "helpers.h"

#define SEED 47
#define RSIZE (2 * 4096ull)
#define STRIDE (1ull << 20)

int main(void)
{
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	struct t_src ts;
	uint8_t *host[PAGEIN_MAX_REGIONS + 1], *img;
	uint64_t len = PAGEIN_MAX_REGIONS * STRIDE;
	unsigned i;
	int ret;

	t_require_uffd();
	alarm(30);
	T_EQ(PAGEIN_MAX_REGIONS, 64);
	img = malloc(len);
	T_ASSERT(img);
	t_fill(img, 0, len, SEED, 0);
	memset(&ts, 0, sizeof(ts));
	T_EQ(t_src_new(&ts, img, 0, len, &src), 0);
	pagein_config_init(&cfg);
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	for (i = 0; i < PAGEIN_MAX_REGIONS; i++) {
		ret = pagein_region_add(s, i * STRIDE, RSIZE, PAGEIN_BACKING_ANON, (void **)&host[i]);
		if (ret) {
			printf("FAIL: region %u of %d refused: %d (%s)\n", i, PAGEIN_MAX_REGIONS, ret,
			       t_last_log);
			return 1;
		}
	}
	T_EQ(pagein_region_add(s, len, RSIZE, PAGEIN_BACKING_ANON, (void **)&host[i]), -ENOSPC);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	for (i = 0; i < PAGEIN_MAX_REGIONS; i++)
		T_EQ(*(volatile uint64_t *)(host[i] + 4096), t_word(SEED, i * STRIDE + 4096));
	pagein_space_free(s);
	pagein_source_free(src);
	free(ts.fetches);
	free(img);
	t_pass("64 regions in one space");
}
