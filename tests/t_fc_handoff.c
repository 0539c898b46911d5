// SPDX-License-Identifier: MIT
/*
 * t_fc_handoff.c - the hand-off socket's bad input (lib/fcsock.c): an fd that is not a
 * userfaultfd (eventfd, pipe, file), a message without an fd, a VMM that closes early or stays
 * silent, a message that is not JSON, regions that do not match what the VMM registered (not
 * registered, wrong page size, unmapped, half registered), and a socket path that is another
 * file: each refused with its own clear error. Also what must work: the JSON split over several
 * writes with the fd in any of them, and the VMM's exit seen at once.
 */
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "uapi.h"
#include "vmm.h"

static char sock_path[64];
static struct pi_fc_handoff h;

static int vmm_connect(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	T_ASSERT(fd >= 0);
	memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
	T_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static int new_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	T_ASSERT(fd >= 0);
	T_EQ(ioctl(fd, UFFDIO_API, &api), 0);
	return fd;
}

static const char *good = "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,"
			  "\"page_size\":4096,\"page_size_kib\":4096}]";

/* One hand-off where the VMM sends json with fd (or none); expect ret and msg. */
static void expect_accept(int lfd, const char *json, int fd, int want, const char *msg)
{
	char err[PI_ERRLEN] = "";
	int s = vmm_connect(), ret;

	if (json)
		T_EQ(pi_fc_send(s, json, strlen(json), &fd, fd >= 0 ? 1 : 0), 0);
	close(s); /* a VMM that has sent everything and gone, or that closes early */
	ret = pi_fc_accept(lfd, 2000, &h, err, sizeof(err));
	if (ret != want || (msg && !strstr(err, msg))) {
		fprintf(stderr, "FAIL json %s fd %d: got %d \"%s\", want %d \"%s\"\n",
			json ? json : "(none)", fd, ret, err, want, msg ? msg : "");
		exit(1);
	}
	if (ret == 0)
		pi_fc_handoff_close(&h);
	else
		printf("  refused: %s\n", err);
}

static void check_regions(void)
{
	struct pi_fc_region r[2];
	struct pi_fc_peer_map m[2];
	char err[PI_ERRLEN];
	int uffd = new_uffd();
	uint8_t *a, *b;

	a = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(a != MAP_FAILED && b != MAP_FAILED);
	{
		struct uffdio_register reg = { .range = { (uintptr_t)a, 1 << 20 },
					       .mode = UFFDIO_REGISTER_MODE_MISSING };

		T_EQ(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
		reg = (struct uffdio_register){ .range = { (uintptr_t)b, 512 << 10 },
						.mode = UFFDIO_REGISTER_MODE_MISSING };
		T_EQ(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
	}
	r[0] = (struct pi_fc_region){ (uintptr_t)a, 1 << 20, 0, 4096, true };
	r[1] = (struct pi_fc_region){ (uintptr_t)b, 512 << 10, 1 << 20, 4096, true };
	T_EQ(pi_fc_check_regions(getpid(), r, 2, m, err, sizeof(err)), 0);
	T_EQ(m[0].backing, PAGEIN_BACKING_ANON);
	T_ASSERT(!m[0].shared);
	/* half registered: b's second half is not */
	r[1].size = 1 << 20;
	T_EQ(pi_fc_check_regions(getpid(), r, 2, m, err, sizeof(err)), -EINVAL);
	T_ASSERT(strstr(err, "region 1") && strstr(err, "not registered"));
	printf("  refused: %s\n", err);
	/* wrong page size */
	r[1].size = 512 << 10;
	r[0].page_size = 2u << 20;
	T_EQ(pi_fc_check_regions(getpid(), r, 2, m, err, sizeof(err)), -EINVAL);
	T_ASSERT(strstr(err, "page size"));
	printf("  refused: %s\n", err);
	/* not mapped at all */
	r[0].page_size = 4096;
	T_EQ(munmap(b + (256 << 10), 4096), 0);
	T_EQ(pi_fc_check_regions(getpid(), r, 2, m, err, sizeof(err)), -EINVAL);
	T_ASSERT(strstr(err, "no mapping"));
	printf("  refused: %s\n", err);
	/* a process that does not exist */
	T_ASSERT(pi_fc_check_regions(0x3fffffff, r, 2, m, err, sizeof(err)) == -ENOENT);
	munmap(a, 1 << 20);
	munmap(b, 1 << 20);
	close(uffd);
}

int main(void)
{
	char err[PI_ERRLEN];
	int lfd, uffd, efd, pfd[2], fd, s, st;
	pid_t c;

	t_require_uffd();
	alarm(60);
	snprintf(sock_path, sizeof(sock_path), "/tmp/t_fc_handoff.%d", (int)getpid());

	/* the socket path is another kind of file: refused, left alone */
	fd = open(sock_path, O_CREAT | O_WRONLY, 0600);
	T_ASSERT(fd >= 0);
	close(fd);
	T_EQ(pi_fc_listen(sock_path, err, sizeof(err)), -EEXIST);
	printf("  refused: %s\n", err);
	unlink(sock_path);
	lfd = pi_fc_listen(sock_path, err, sizeof(err));
	T_ASSERT(lfd >= 0);
	close(lfd);
	lfd = pi_fc_listen(sock_path, err, sizeof(err)); /* a stale socket is replaced */
	T_ASSERT(lfd >= 0);

	uffd = new_uffd();
	efd = eventfd(0, EFD_CLOEXEC);
	T_ASSERT(efd >= 0 && pipe(pfd) == 0);
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0);

	expect_accept(lfd, good, uffd, 0, NULL);
	expect_accept(lfd, good, efd, -EBADF, "not a userfaultfd");
	expect_accept(lfd, good, pfd[0], -EBADF, "not a userfaultfd");
	expect_accept(lfd, good, fd, -EBADF, "not a userfaultfd");
	expect_accept(lfd, good, -1, -ENOMSG, "without a userfaultfd");
	expect_accept(lfd, "[{\"base_host_virt_addr\":4096,", uffd, -ECONNRESET,
		      "closed the connection after 29 bytes");
	expect_accept(lfd, NULL, -1, -ECONNRESET, "after 0 bytes");
	expect_accept(lfd, "hello", uffd, -EINVAL, "not a JSON array");

	/* silent: connected, sends nothing, stays */
	s = vmm_connect();
	T_EQ(pi_fc_accept(lfd, 200, &h, err, sizeof(err)), -ETIMEDOUT);
	printf("  refused: %s\n", err);
	close(s);
	/* nobody comes */
	T_EQ(pi_fc_accept(lfd, 100, &h, err, sizeof(err)), -ETIMEDOUT);
	printf("  refused: %s\n", err);

	/* the JSON in three writes, the fd with the second; then the VMM's exit is seen */
	c = fork();
	T_ASSERT(c >= 0);
	if (c == 0) {
		size_t len = strlen(good);

		s = vmm_connect();
		T_EQ(pi_fc_send(s, good, 10, NULL, 0), 0);
		usleep(20000);
		T_EQ(pi_fc_send(s, good + 10, 20, &uffd, 1), 0);
		usleep(20000);
		T_EQ(pi_fc_send(s, good + 30, len - 30, NULL, 0), 0);
		pause(); /* until the test is done looking at the live VMM */
		_exit(0);
	}
	T_EQ(pi_fc_accept(lfd, 5000, &h, err, sizeof(err)), 0);
	T_EQ(h.json_len, strlen(good));
	T_EQ(h.pid, c);
	T_EQ(pi_fc_peer_gone(&h, 50), 0);
	T_EQ(kill(c, SIGKILL), 0);
	T_EQ(pi_fc_peer_gone(&h, 5000), 1);
	T_EQ(waitpid(c, &st, 0), c);
	pi_fc_handoff_close(&h);
	printf("  split message accepted; the VMM's death seen (pid %d, pidfd)\n", (int)c);

	check_regions();
	close(lfd);
	unlink(sock_path);
	t_pass("fc_handoff: bad hand-offs refused with a reason, split messages and exits handled");
}
