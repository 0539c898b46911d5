// SPDX-License-Identifier: MIT
/*
 * t_adopt_uffd.c - a pagein space serving another process's userfaultfd
 * (pagein_space_adopt_uffd): a peer process maps two regions, registers them with its own uffd
 * (EVENT_REMOVE, missing faults) and hands the uffd over a socket; the space (handler threads)
 * adopts it and the peer's regions, and the peer's threads read every byte right, a discarded
 * page reads zeros (also one never touched before). The accessors and KVM refuse the peer's memory; when the peer exits,
 * pagein_wait_complete answers -ESRCH and the space is freed cleanly.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "uapi.h"
#include "vmm.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define SIZE (2ull << 20) /* each of the two regions */
#define SEED 97
#define GPA1 (1ull << 32)

/* The peer: its memory, its uffd; sends both; touches when told; exits 0 when all was right. */
static int peer(int sock)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	uint8_t *m[2];
	char msg[128], go;
	int uffd, i;

	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		return 2;
	for (i = 0; i < 2; i++) {
		struct uffdio_register reg;

		m[i] = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m[i] == MAP_FAILED)
			return 2;
		reg = (struct uffdio_register){ .range = { (uintptr_t)m[i], SIZE },
						.mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			return 2;
	}
	snprintf(msg, sizeof(msg), "%p %p", (void *)m[0], (void *)m[1]);
	if (pi_fc_send(sock, msg, strlen(msg) + 1, &uffd, 1) < 0 || read(sock, &go, 1) != 1)
		return 2;
	/* every page of region 0, half of region 1: the space is not complete when we exit */
	if (t_check(m[0], 0, SIZE, SEED, 5) != UINT64_MAX ||
	    t_check(m[1], GPA1, SIZE / 2, SEED, 5) != UINT64_MAX)
		return 1;
	/* a discarded page reads zeros, never the source's bytes again; so does one discarded
	 * before it was ever touched (the balloon's contract) */
	if (madvise(m[0] + 4096, 4096, MADV_DONTNEED) < 0 || *(volatile uint64_t *)(m[0] + 4096))
		return 1;
	if (madvise(m[1] + SIZE - 8192, 8192, MADV_DONTNEED) < 0 ||
	    *(volatile uint64_t *)(m[1] + SIZE - 8192) || *(volatile uint64_t *)(m[1] + SIZE - 8))
		return 3;
	return 0;
}

int main(void)
{
	struct pagein_uffd_adopt ua = { .size = sizeof(ua) };
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src, *inner;
	struct pagein_stats st;
	char buf[128];
	void *addr[2];
	uint8_t *img;
	int sv[2], st_code, i, uffd = -1;
	uint64_t w;
	pid_t pid;

	t_require_uffd();
	alarm(60);
	img = malloc(2 * SIZE);
	T_ASSERT(img);
	T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fflush(stdout);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(peer(sv[1]));
	}
	close(sv[1]);
	{
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr a;
		} cm;
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
				     .msg_controllen = sizeof(cm.b) };
		ssize_t got = recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC);

		T_ASSERT(got > 0 && CMSG_FIRSTHDR(&mh));
		buf[got] = 0;
		memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
		T_EQ(sscanf(buf, "%p %p", &addr[0], &addr[1]), 2);
	}
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 2;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_space_adopt_uffd(s, &(struct pagein_uffd_adopt){ .size = sizeof(ua),
								.uffd = uffd, .pidfd = -1 }),
	     -EINVAL); /* two readers could serve a discarded page before its REMOVE is seen */
	pagein_space_free(s);
	cfg.readers = 1;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	ua.uffd = uffd;
	ua.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	T_ASSERT(ua.pidfd >= 0);
	T_EQ(pagein_space_adopt_uffd(s, &ua), 0);
	T_EQ(pagein_space_adopt_uffd(s, &ua), -EBUSY);
	{
		void *h;

		T_EQ(pagein_region_add(s, 1ull << 40, SIZE, PAGEIN_BACKING_ANON, &h), -EINVAL);
	}
	for (i = 0; i < 2; i++) {
		struct pagein_region_adopt a = { .size = sizeof(a), .gpa = i ? GPA1 : 0, .len = SIZE,
						 .backing = PAGEIN_BACKING_ANON, .host = addr[i],
						 .fd = -1 };

		T_EQ(pagein_region_adopt(s, &a), 0);
	}
	/* the source: one buffer with both regions' images, its second half moved to GPA1 */
	t_fill(img, 0, SIZE, SEED, 5);
	t_fill(img + SIZE, GPA1, SIZE, SEED, 5);
	{
		struct pagein_raw_region map[2] = { { 0, SIZE, 0, 0 }, { SIZE, SIZE, GPA1, 0 } };

		T_EQ(pagein_source_mem_new(img, 0, 2 * SIZE, &inner), 0);
		T_EQ(pagein_source_remap_new(inner, map, 2, &src), 0);
	}
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(pagein_read(s, 0, &w, 8), -EOPNOTSUPP); /* the peer's memory is not ours */
	T_EQ(write(sv[0], "g", 1), 1);
	T_EQ(waitpid(pid, &st_code, 0), pid);
	T_ASSERT(WIFEXITED(st_code));
	T_EQ(WEXITSTATUS(st_code), 0);
	T_EQ(pagein_wait_complete(s, 5000), -ESRCH); /* the peer is gone, half was never touched */
	pagein_stats_get(s, &st);
	printf("  peer served: %llu fault messages, %llu pages on demand, %llu around, %llu "
	       "re-zeroed, %llu REMOVE events; its exit seen\n",
	       (unsigned long long)st.faults_handler, (unsigned long long)st.pages_demand,
	       (unsigned long long)st.pages_around, (unsigned long long)st.rezero,
	       (unsigned long long)st.events_remove);
	/* the peer checked every byte it read; here: its faults reached the engine */
	T_ASSERT(st.faults_handler > 0 && st.pages_demand > 0 && st.rezero >= 1);
	pagein_space_free(s);
	pagein_source_free(src);
	pagein_source_free(inner);
	close(uffd);
	close(ua.pidfd);
	close(sv[0]);
	free(img);
	t_pass("adopt_uffd: another process's userfaultfd served by a pagein space");
}
