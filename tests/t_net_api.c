// SPDX-License-Identifier: MIT
/*
 * t_net_api.c - the network configs can grow without breaking libpagein.so.0: a config never
 * filled by its _config_init (size 0) is refused, one from a newer header with fields this
 * library does not know set is refused, the same with those fields zero is accepted, and one from
 * an older (smaller) header gets the defaults for the fields it lacks.
 */
#include <stddef.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"

int main(void)
{
	struct {
		struct pagein_server_config c;
		uint64_t newer[2]; /* fields of a later version */
	} big;
	struct pagein_server_config sc;
	struct pagein_net_config nc;
	struct pagein_server_stats st;
	struct pagein_server *srv;
	struct pagein_source *src;
	static uint8_t page[4096];
	char addr[64];

	memset(&sc, 0, sizeof(sc));
	T_EQ(pagein_server_new(&sc, &srv), -EINVAL);
	memset(&nc, 0, sizeof(nc));
	nc.addr = "127.0.0.1:1";
	T_EQ(pagein_source_net_new(&nc, &src), -EINVAL);

	memset(&big, 0, sizeof(big));
	pagein_server_config_init(&big.c);
	big.c.size = sizeof(big);
	big.newer[1] = 1;
	T_EQ(pagein_server_new(&big.c, &srv), -EINVAL);
	big.newer[1] = 0;
	T_EQ(pagein_server_new(&big.c, &srv), 0);
	pagein_server_free(srv);

	/* an older header: no idle_ms and after; a limit of 1 session per peer would show if the
	 * garbage past its size were read */
	pagein_server_config_init(&sc);
	sc.size = offsetof(struct pagein_server_config, idle_ms);
	sc.idle_ms = 1;
	sc.max_sessions_per_peer = 1;
	T_EQ(pagein_server_new(&sc, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, sizeof(page), page), 0);
	T_EQ(pagein_server_start(srv), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", pagein_server_port(srv));
	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.bulk = 0;
	T_EQ(pagein_source_net_new(&nc, &src), 0);
	usleep(300000);
	pagein_server_stats_get(srv, &st);
	T_EQ(st.sessions_active, 1); /* idle_ms 1 would have closed it */
	T_EQ(st.reserved[0], 0);
	pagein_source_free(src);
	pagein_server_free(srv);
	t_pass("t_net_api");
}
