// SPDX-License-Identifier: MIT
/*
 * t_net_resolve.c - how a destination finds its server: a name that does not resolve is reported
 * as a resolver failure (the resolver's own words in the log, -ENXIO or -EAGAIN), not as "No route
 * to host"; and a name with several addresses is tried address by address, so a server that
 * listens on the second one is reached (hosts file in a private mount namespace).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"

#define SIZE (1ull << 20)

int main(void)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	struct pagein_server_config scfg;
	struct pagein_net_config nc;
	struct pagein_region_desc reg;
	struct pagein_server *srv;
	struct pagein_source *src;
	char hosts[] = "/tmp/t_net_resolve-XXXXXX", addr[64], first[64] = "?";
	const char *lines = "127.0.0.1 pagein-multi\n127.0.0.9 pagein-multi\n";
	uint8_t *mem;
	int ret, fd;

	alarm(60);
	/* 1. a name that does not resolve */
	pagein_net_config_init(&nc);
	nc.addr = "no-such-host.invalid:7000";
	nc.log = t_log;
	t_last_log[0] = 0;
	ret = pagein_source_net_new(&nc, &src);
	fprintf(stderr, "unresolvable: %d (%s), log: %s\n", ret, strerror(-ret), t_last_log);
	T_ASSERT(ret != -EHOSTUNREACH);
	T_ASSERT(ret == -ENXIO || ret == -EAGAIN);
	T_ASSERT(strstr(t_last_log, "cannot resolve no-such-host.invalid"));

	/* 2. several addresses: only the second one has a server */
	if (unshare(CLONE_NEWNS) < 0)
		t_skip("SKIP: no private mount namespace (unshare: %s): cannot give the test its own "
		       "/etc/hosts", strerror(errno));
	T_ASSERT(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
	fd = mkstemp(hosts);
	T_ASSERT(fd >= 0);
	T_ASSERT(write(fd, lines, strlen(lines)) == (ssize_t)strlen(lines));
	close(fd);
	if (mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) < 0) {
		unlink(hosts);
		t_skip("SKIP: cannot bind-mount a hosts file over /etc/hosts: %s", strerror(errno));
	}
	unlink(hosts); /* the mount keeps it */
	T_EQ(getaddrinfo("pagein-multi", "1", &hints, &ai), 0);
	if (ai->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, first,
			  sizeof(first));
	fprintf(stderr, "pagein-multi resolves first to %s%s\n", first, ai->ai_next ? ", then more" : "");
	T_ASSERT(ai->ai_next); /* two addresses, or the test shows nothing */
	freeaddrinfo(ai);

	mem = malloc(SIZE);
	T_ASSERT(mem);
	t_fill(mem, 0, SIZE, 3, 0);
	pagein_server_config_init(&scfg);
	/* whichever address comes first, the server is on the other one */
	scfg.listen = strcmp(first, "127.0.0.9") ? "127.0.0.9:0" : "127.0.0.1:0";
	scfg.log = t_log;
	T_EQ(pagein_server_new(&scfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, SIZE, mem), 0);
	T_EQ(pagein_server_start(srv), 0);
	snprintf(addr, sizeof(addr), "pagein-multi:%d", pagein_server_port(srv));
	nc.addr = addr;
	T_EQ(pagein_source_net_new(&nc, &src), 0);
	T_EQ(pagein_net_regions(src, &reg, 1), 1);
	T_EQ(reg.size, SIZE);
	T_EQ(reg.digest, pagein_digest(mem, SIZE));
	pagein_source_free(src);
	pagein_server_free(srv);
	free(mem);
	t_pass("t_net_resolve");
}
