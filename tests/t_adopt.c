// SPDX-License-Identifier: MIT
/*
 * t_adopt.c - adopting memory the program mapped itself (pagein_region_adopt): private
 * anonymous memory, a memfd mapped at an offset (with its fd), and a hugetlb memfd; each
 * restored through both front-ends with every byte verified, and still the program's after
 * pagein_space_free (writable, holding what arrived, unmapped by the program itself). Bad
 * adoptions (misaligned, an fd for anonymous memory, no fd or a regular file for shmem, a size
 * field of 0, flags) are refused.
 * Usage: t_adopt [self|handler]   (none: both)
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (4ull << 20)
#define SEED 83

static void run(enum pagein_frontend fe, enum pagein_backing b)
{
	struct pagein_region_adopt a = { .size = sizeof(a), .gpa = 1ull << 32, .len = SIZE,
					 .backing = b, .fd = -1 };
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	struct t_src ts;
	uint64_t off = b == PAGEIN_BACKING_SHMEM ? 1ull << 20 : 0; /* the region is mid-file */
	uint8_t *img, *mem, *map;
	int fd = -1;

	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, a.gpa, SIZE, SEED, 7);
	if (b == PAGEIN_BACKING_ANON) {
		map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		T_ASSERT(map != MAP_FAILED);
		mem = map;
	} else {
		fd = memfd_create("t_adopt", MFD_CLOEXEC |
				  (b == PAGEIN_BACKING_HUGETLB ? MFD_HUGETLB : 0));
		T_ASSERT(fd >= 0);
		T_EQ(ftruncate(fd, (off_t)(SIZE + off)), 0);
		map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
		T_ASSERT(map != MAP_FAILED);
		mem = map;
	}
	a.host = mem;
	a.fd = fd;
	a.fd_offset = off;
	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_adopt(s, &a), 0);
	T_ASSERT(pagein_host_addr(s, a.gpa + 4096) == mem + 4096);
	T_EQ(t_src_new(&ts, img, a.gpa, SIZE, &src), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(t_check(mem, a.gpa, SIZE, SEED, 7), UINT64_MAX); /* every byte, through faults */
	pagein_space_free(s);
	pagein_source_free(src);
	free(ts.fetches);
	/* the program's memory still: readable, writable, then unmapped by the program */
	T_EQ(t_check(mem, a.gpa, SIZE, SEED, 7), UINT64_MAX);
	mem[100] = 0x5a;
	T_EQ(mem[100], 0x5a);
	if (fd >= 0 && b == PAGEIN_BACKING_SHMEM) {
		uint64_t w;

		/* the bytes went into the file at the region's offset */
		T_EQ(pread(fd, &w, 8, (off_t)(off + 8192)), 8);
		T_EQ(w, t_word(SEED, a.gpa + 8192));
	}
	T_EQ(munmap(map, SIZE), 0);
	if (fd >= 0)
		close(fd);
	free(img);
	printf("  %s %s: adopted, restored, verified, still the program's after free\n",
	       pagein_frontend_name(fe), pagein_backing_name(b));
}

static void bad(void)
{
	struct pagein_region_adopt a = { .size = sizeof(a), .gpa = 0, .len = 1 << 20,
					 .backing = PAGEIN_BACKING_ANON, .fd = -1 };
	struct pagein_space *s;
	uint8_t *m = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

	struct pagein_config cfg;

	T_ASSERT(m != MAP_FAILED && fd >= 0);
	pagein_config_init(&cfg);
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	a.host = m + 100;
	T_EQ(pagein_region_adopt(s, &a), -EINVAL); /* misaligned */
	a.host = m;
	a.fd = fd;
	T_EQ(pagein_region_adopt(s, &a), -EINVAL); /* an fd for anonymous memory */
	a.backing = PAGEIN_BACKING_SHMEM;
	T_EQ(pagein_region_adopt(s, &a), -EINVAL); /* shmem over a regular file */
	printf("  refused: %s\n", t_last_log);
	a.fd = -1;
	T_EQ(pagein_region_adopt(s, &a), -EINVAL); /* shmem without its fd */
	a.backing = PAGEIN_BACKING_ANON;
	a.size = 0;
	T_EQ(pagein_region_adopt(s, &a), -EINVAL);
	a.size = sizeof(a);
	a.flags = 1;
	T_EQ(pagein_region_adopt(s, &a), -EINVAL);
	a.flags = 0;
	T_EQ(pagein_region_adopt(s, &a), 0);
	T_EQ(pagein_region_adopt(s, &a), -EINVAL); /* overlaps itself */
	pagein_space_free(s);
	T_EQ(munmap(m, 2 << 20), 0); /* still ours: pagein did not unmap it */
	close(fd);
}

int main(int argc, char **argv)
{
	enum pagein_frontend fes[2] = { PAGEIN_FRONTEND_SELF, PAGEIN_FRONTEND_HANDLER };
	unsigned i;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "self") && strcmp(argv[1], "handler"))) {
		fprintf(stderr, "usage: %s [self|handler]   (none: both)\n", argv[0]);
		return 1;
	}
	t_require_uffd();
	alarm(60);
	bad();
	for (i = 0; i < 2; i++) {
		if (argc == 2 && strcmp(argv[1], pagein_frontend_name(fes[i])))
			continue;
		run(fes[i], PAGEIN_BACKING_ANON);
		run(fes[i], PAGEIN_BACKING_SHMEM);
	}
	/* huge pages are optional: only if the machine has them */
	fflush(stdout);
	if (fork() == 0) {
		t_require_hugepages(4);
		for (i = 0; i < 2; i++)
			if (argc == 1 || !strcmp(argv[1], pagein_frontend_name(fes[i])))
				run(fes[i], PAGEIN_BACKING_HUGETLB);
		exit(0);
	} else {
		int st;

		T_ASSERT(wait(&st) > 0);
		T_ASSERT(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 77));
	}
	t_pass("adopt: the program's own memory restored through pagein and left to it");
}
