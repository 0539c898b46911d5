// SPDX-License-Identifier: MIT
/*
 * t_perm.c - userfaultfd without privilege: as uid/gid 65534 with vm.unprivileged_userfaultfd=0,
 * the handler front-end fails -EPERM with a log naming the fixes (the sysctl, /dev/userfaultfd),
 * while the self-resolve front-end falls back to UFFD_USER_MODE_ONLY and still restores a region
 * lazily through SIGBUS, every byte right. Where the sysctl is 1, both front-ends must work.
 */
#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define NOBODY 65534
#define SEED 0x9e4
#define ZERO_EVERY 3
#define GPA (1ull << 20)
#define SIZE (1ull << 20)

static int read_sysctl(void)
{
	char c = 0;
	int fd = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c >= '0' && c <= '9' ? c - '0' : -1;
}

static void expect_log(const char *want)
{
	if (!strstr(t_last_log, want)) {
		fprintf(stderr, "FAIL: the -EPERM log \"%s\" does not mention \"%s\"\n", t_last_log,
			want);
		exit(1);
	}
}

/* The handler front-end as this user: -EPERM naming the fixes, or (permitted) a working space. */
static void handler(bool permitted)
{
	struct pagein_config cfg;
	struct pagein_space *s = NULL;
	int ret;

	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.log = t_log;
	t_last_log[0] = 0;
	ret = pagein_space_new(&cfg, &s);
	if (permitted) {
		T_EQ(ret, 0);
		printf("  handler front-end works for uid %d (userfaultfd is permitted here)\n",
		       NOBODY);
		pagein_space_free(s);
		return;
	}
	T_EQ(ret, -EPERM);
	T_ASSERT(s == NULL);
	expect_log("unprivileged_userfaultfd");
	expect_log("/dev/userfaultfd");
	printf("  handler front-end: -EPERM, log: %s\n", t_last_log);
}

/* The self-resolve front-end as this user: a full lazy restore through SIGBUS. */
static void self(void)
{
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	struct pagein_stats st;
	uint64_t present, total, bad, i;
	uint8_t *img, *host;

	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, GPA, SIZE, SEED, ZERO_EVERY);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_SELF;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_add(s, GPA, SIZE, PAGEIN_BACKING_ANON, (void **)&host), 0);
	T_EQ(pagein_source_mem_new(img, GPA, SIZE, &src), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	pagein_residency(s, &present, &total);
	T_EQ(present, 0);
	/* every page first touched by this thread, in user mode: reads and writes, back to front */
	for (i = SIZE / 4096; i-- > 0;) {
		volatile uint64_t *w = (volatile uint64_t *)(host + i * 4096 + (i % 512) * 8);

		if (i & 1)
			*w = *w;
		else
			(void)*w;
	}
	T_EQ(pagein_wait_complete(s, 10000), 0);
	pagein_residency(s, &present, &total);
	T_EQ(present, total);
	bad = t_check(host, GPA, SIZE, SEED, ZERO_EVERY);
	if (bad != UINT64_MAX) {
		fprintf(stderr, "FAIL: wrong bytes at gpa %#llx\n", (unsigned long long)bad);
		exit(1);
	}
	pagein_stats_get(s, &st);
	T_ASSERT(st.faults_self > 0);
	T_EQ(st.pages_demand + st.pages_around + st.pages_fill + st.pages_accessor, total);
	printf("  self front-end works for uid %d: %llu SIGBUS faults, %llu pages, all bytes right\n",
	       NOBODY, (unsigned long long)st.faults_self, (unsigned long long)total);
	pagein_space_free(s);
	pagein_source_free(src);
	free(img);
}

static int child(void)
{
	int sysctl;
	bool dev;

	alarm(60);
	T_ASSERT(setgroups(0, NULL) == 0);
	T_ASSERT(setgid(NOBODY) == 0);
	T_ASSERT(setuid(NOBODY) == 0);
	T_ASSERT(getuid() == NOBODY && geteuid() == NOBODY && getegid() == NOBODY);
	sysctl = read_sysctl();
	if (sysctl < 0)
		t_skip("cannot read /proc/sys/vm/unprivileged_userfaultfd");
	dev = access("/dev/userfaultfd", R_OK | W_OK) == 0;
	printf("  uid %d: vm.unprivileged_userfaultfd=%d, /dev/userfaultfd %s\n", NOBODY, sysctl,
	       dev ? "accessible" : "not accessible");
	if (sysctl == 0 && !dev)
		handler(false);
	else
		handler(true); /* the sysctl or /dev/userfaultfd lets this user in */
	self();
	return 0;
}

int main(void)
{
	int status;
	pid_t pid;

	if (geteuid() != 0)
		t_skip("needs root to drop to uid/gid %d (running as uid %d)", NOBODY, (int)geteuid());
	t_require_uffd();
	fflush(stdout);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		int ret = child();

		fflush(stdout);
		_exit(ret);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "FAIL: the unprivileged child died of signal %d\n", WTERMSIG(status));
		return 1;
	}
	if (WEXITSTATUS(status) == 77)
		return 77; /* the child printed why */
	if (WEXITSTATUS(status)) {
		fprintf(stderr, "FAIL: the unprivileged child exited %d\n", WEXITSTATUS(status));
		return 1;
	}
	t_pass("perm: userfaultfd without privilege names the fix, self-resolve still restores");
}
