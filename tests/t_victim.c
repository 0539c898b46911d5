// SPDX-License-Identifier: MIT
/*
 * t_victim.c - the victim pattern end to end: fill two regions with a seeded pattern (with zero
 * pages), write a snapshot file, restore it lazily in another process with the given backing and
 * front-end (and the background fill on or off), touch every page in random order from several
 * threads (reads and writes), then verify every byte and that each page was installed once.
 * Usage: t_victim anon|shmem|hugetlb self|handler fill|nofill
 */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define THREADS 4
#define SEED 0x5eed
#define ZERO_EVERY 7

struct victim {
	struct pagein_space *s;
	struct pagein_region_desc regs[2];
	uint8_t *host[2];
	uint64_t seed;
};

static void *toucher(void *arg)
{
	struct victim *v = ((void **)arg)[0];
	uint64_t st = (uint64_t)(uintptr_t)((void **)arg)[1] * 7919 + 1, i, n, p;
	unsigned r;

	for (r = 0; r < 2; r++) {
		n = v->regs[r].size / 4096;
		for (i = 0; i < n; i++) {
			p = t_rand(&st, n) * 4096 + t_rand(&st, 4096 / 8) * 8;
			uint64_t *w = (uint64_t *)(v->host[r] + p);

			/* atomics: the threads share pages, and a plain *w = *w would race */
			if (i & 1) /* a write fault on a missing page must keep its bytes */
				__atomic_fetch_add(w, 0, __ATOMIC_RELAXED);
			else
				(void)__atomic_load_n(w, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static int restore(const char *path, enum pagein_backing b, enum pagein_frontend fe, bool fill)
{
	struct pagein_config cfg;
	struct pagein_source *src;
	struct pagein_stats st;
	struct victim v = { 0 };
	pthread_t th[THREADS];
	void *args[THREADS][2];
	uint64_t bad, total = 0;
	unsigned i;

	alarm(60);
	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.readers = 2;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &v.s), 0);
	T_EQ(pagein_snapshot_regions(path, v.regs, 2), 2);
	for (i = 0; i < 2; i++) {
		T_EQ(pagein_region_add(v.s, v.regs[i].gpa, v.regs[i].size, b, (void **)&v.host[i]), 0);
		total += v.regs[i].size / pagein_backing_page_size(b);
	}
	T_EQ(pagein_source_file_new(path, &src), 0);
	T_EQ(pagein_space_set_source(v.s, src), 0);
	T_EQ(pagein_space_start(v.s), 0);
	if (fill)
		T_EQ(pagein_fill_start(v.s), 0);
	for (i = 0; i < THREADS; i++) {
		args[i][0] = &v;
		args[i][1] = (void *)(uintptr_t)i;
		T_ASSERT(pthread_create(&th[i], NULL, toucher, args[i]) == 0);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	/* whatever the touchers missed (random order), the accessors bring in */
	for (i = 0; i < 2; i++)
		T_EQ(pagein_resolve(v.s, v.regs[i].gpa, v.regs[i].size, NULL), 0);
	T_EQ(pagein_wait_complete(v.s, 10000), 0);
	for (i = 0; i < 2; i++) {
		bad = t_check(v.host[i], v.regs[i].gpa, v.regs[i].size, SEED, ZERO_EVERY);
		if (bad != UINT64_MAX) {
			fprintf(stderr, "FAIL: wrong bytes at gpa %#llx\n", (unsigned long long)bad);
			return 1;
		}
		T_ASSERT(pagein_digest(v.host[i], v.regs[i].size) == v.regs[i].digest);
	}
	pagein_stats_get(v.s, &st);
	printf("  %s/%s/%s: faults self %llu handler %llu, pages demand %llu around %llu fill %llu "
	       "accessor %llu zero %llu, races %llu, eexist %llu, p99 %llu ns\n",
	       pagein_backing_name(b), pagein_frontend_name(fe), fill ? "fill" : "nofill",
	       (unsigned long long)st.faults_self, (unsigned long long)st.faults_handler,
	       (unsigned long long)st.pages_demand, (unsigned long long)st.pages_around,
	       (unsigned long long)st.pages_fill, (unsigned long long)st.pages_accessor,
	       (unsigned long long)st.pages_zero, (unsigned long long)st.races_lost,
	       (unsigned long long)st.eexist, (unsigned long long)pagein_stats_quantile(&st, 0.99));
	/* invariant 1: every page installed exactly once */
	T_EQ(st.pages_demand + st.pages_around + st.pages_fill + st.pages_accessor, total);
	if (b != PAGEIN_BACKING_HUGETLB) /* a 2 MiB page of the pattern is never all zero */
		T_ASSERT(st.pages_zero > 0);
	/* with the fill on, it may have installed everything before a toucher got to fault */
	if (!fill)
		T_ASSERT(fe == PAGEIN_FRONTEND_SELF ? st.faults_self > 0 : st.faults_handler > 0);
	pagein_space_free(v.s);
	pagein_source_free(src);
	return 0;
}

int main(int argc, char **argv)
{
	char path[] = "/tmp/pagein-victim-XXXXXX";
	struct pagein_region_desc regs[2];
	const void *data[2];
	enum pagein_backing b;
	enum pagein_frontend fe;
	bool fill;
	uint64_t mb;
	int fd, status;
	pid_t pid;
	void *img[2];

	if (argc != 4) {
		fprintf(stderr, "usage: %s anon|shmem|hugetlb self|handler fill|nofill\n", argv[0]);
		return 1;
	}
	b = t_backing(argv[1]);
	fe = t_frontend(argv[2]);
	fill = !strcmp(argv[3], "fill");
	t_require_uffd();
	/* hugetlb: 2 regions of 4 MiB = 4 huge pages; others 8 MiB + 4 MiB */
	mb = b == PAGEIN_BACKING_HUGETLB ? 4 : 8;
	if (b == PAGEIN_BACKING_HUGETLB)
		t_require_hugepages(4);
	regs[0] = (struct pagein_region_desc){ .gpa = 0, .size = mb << 20, .backing = b };
	regs[1] = (struct pagein_region_desc){ .gpa = 1ull << 30, .size = 4 << 20, .backing = b };
	for (int i = 0; i < 2; i++) {
		img[i] = malloc(regs[i].size);
		T_ASSERT(img[i]);
		t_fill(img[i], regs[i].gpa, regs[i].size, SEED, ZERO_EVERY);
		data[i] = img[i];
	}
	fd = mkstemp(path);
	T_ASSERT(fd >= 0);
	close(fd);
	T_EQ(pagein_snapshot_save(path, regs, data, 2), 0);

	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0)
		_exit(restore(path, b, fe, fill));
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	unlink(path);
	free(img[0]);
	free(img[1]);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "FAIL: restoring process %s %d\n",
			WIFSIGNALED(status) ? "died of signal" : "exited", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		return 1;
	}
	printf("PASS victim %s %s %s\n", argv[1], argv[2], argv[3]);
	return 0;
}
