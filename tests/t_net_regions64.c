// SPDX-License-Identifier: MIT
/*
 * t_net_regions64.c - a snapshot of 64 regions (the most the protocol and the snapshot format
 * allow) served by the real page server: pagein_net_regions hands a destination all 64, never a
 * silent prefix (an array too small is refused with -E2BIG, and a NULL/0 call gives the count),
 * and pages of the last region arrive over the network with the right bytes.
 */
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define NREG 64
#define RSIZE (64ull << 10)
#define SEED 64
#define ZERO_EVERY 7

static uint64_t gpa_of(unsigned i)
{
	return (uint64_t)i << 20; /* 1 MiB apart: holes between regions */
}

int main(void)
{
	struct pagein_region_desc regs[NREG], got[NREG], small[NREG / 2 + 1];
	const void *data[NREG];
	struct pagein_server_config scfg;
	struct pagein_net_config nc;
	struct pagein_config cfg;
	struct pagein_server *srv;
	struct pagein_source *src;
	struct pagein_space *s;
	char snap[] = "/tmp/t_net_regions64-XXXXXX", addr[64];
	uint8_t *img, *host[2];
	unsigned i;
	int fd;

	alarm(60);
	_Static_assert(NREG == PN_MAX_REGIONS, "the test covers the protocol's limit");
	img = malloc(NREG * RSIZE);
	T_ASSERT(img);
	for (i = 0; i < NREG; i++) {
		t_fill(img + i * RSIZE, gpa_of(i), RSIZE, SEED, ZERO_EVERY);
		regs[i] = (struct pagein_region_desc){ .gpa = gpa_of(i), .size = RSIZE };
		data[i] = img + i * RSIZE;
	}
	fd = mkstemp(snap);
	T_ASSERT(fd >= 0);
	close(fd);
	T_EQ(pagein_snapshot_save(snap, regs, data, NREG), 0);

	pagein_server_config_init(&scfg);
	scfg.log = t_log;
	T_EQ(pagein_server_new(&scfg, &srv), 0);
	T_EQ(pagein_server_add_snapshot(srv, snap), 0);
	T_EQ(pagein_server_start(srv), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", pagein_server_port(srv));

	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.bulk = 0;
	nc.log = t_log;
	T_EQ(pagein_source_net_new(&nc, &src), 0);

	/* every region, in order, with the snapshot's digests */
	T_EQ(pagein_net_regions(src, got, NREG), NREG);
	for (i = 0; i < NREG; i++) {
		T_EQ(got[i].gpa, regs[i].gpa);
		T_EQ(got[i].size, regs[i].size);
		T_EQ(got[i].digest, regs[i].digest);
	}
	/* the count alone */
	T_EQ(pagein_net_regions(src, NULL, 0), NREG);
	/* an array of 32 (or 33) is not "every region": refused, and nothing past it written */
	memset(small, 0xa5, sizeof(small));
	T_EQ(pagein_net_regions(src, small, NREG / 2), -E2BIG);
	T_EQ(small[NREG / 2].gpa, 0xa5a5a5a5a5a5a5a5ull);
	T_EQ(pagein_net_regions(src, small, NREG / 2 + 1), -E2BIG);

	/* pages of the first and the last region come over the network, byte for byte */
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.timeout_ms = 5000;
	cfg.log = t_log;
	t_require_uffd();
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_add(s, got[0].gpa, got[0].size, PAGEIN_BACKING_ANON, (void **)&host[0]),
	     0);
	T_EQ(pagein_region_add(s, got[NREG - 1].gpa, got[NREG - 1].size, PAGEIN_BACKING_ANON,
			       (void **)&host[1]), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(t_check(host[0], got[0].gpa, RSIZE, SEED, ZERO_EVERY), UINT64_MAX);
	T_EQ(t_check(host[1], got[NREG - 1].gpa, RSIZE, SEED, ZERO_EVERY), UINT64_MAX);
	T_EQ(pagein_digest(host[1], RSIZE), regs[NREG - 1].digest);

	pagein_space_free(s);
	pagein_source_free(src);
	pagein_server_free(srv);
	unlink(snap);
	free(img);
	t_pass("t_net_regions64");
}
