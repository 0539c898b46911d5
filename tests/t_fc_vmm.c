// SPDX-License-Identifier: MIT
/*
 * t_fc_vmm.c - a test VMM that restores "guest memory" the way Firecracker does with a UFFD
 * backend, against pagein as its page-fault handler (another process): it maps each region
 * (2 MiB-aligned, MAP_NORESERVE), creates a userfaultfd with EVENT_REMOVE, registers the regions
 * for missing faults, connects to the handler's socket and sends the region JSON (compact, both
 * page-size fields in bytes) with the uffd by SCM_RIGHTS (and the memfd, for memfd memory). Then
 * threads touch every page in random order and verify every byte against the memory file, and a
 * balloon discards pages with MADV_DONTNEED: they must read zeros (private memory) or keep the
 * guest's bytes (shared memfd), never the file's bytes again; a discarded page never touched
 * before reads zeros too. When the VMM exits, the handler must end cleanly on its own.
 * Runs anon, memfd, hugetlb (private, as Firecracker maps it) and hugetlb-memfd memory.
 * Then a working set: recorded in one restore, prefetched in the next (far fewer faults).
 * Usage: t_fc_vmm [anon|memfd|hugetlb|hugetlb-memfd|ws]   (none: all of them)
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "uapi.h"
#include "vmm.h"

#define SEED 41
#define ZERO_EVERY 9 /* every 9th 4 KiB page of the image is zero (a hole in the file) */
#define THREADS 4
#define NREG 2

static uint64_t seed = SEED; /* of the image now in the file */

enum kind { K_ANON, K_MEMFD, K_HUGETLB, K_HUGETLB_MEMFD };
static const char *const kind_name[] = { "anon", "memfd", "hugetlb", "hugetlb-memfd" };

struct vm {
	enum kind kind;
	uint64_t ps;              /* page size */
	uint64_t size[NREG];      /* region sizes; offsets are back to back in the file */
	uint64_t off[NREG];
	uint8_t *mem[NREG];       /* the VMM's guest memory */
	int memfd;
	int uffd;
	uint64_t total;
};

/* The memory file: the pattern keyed by file offset, zero pages left as holes. */
static void make_image(const char *path, uint64_t total)
{
	uint8_t *buf = malloc(total);
	uint64_t off;
	int fd;

	T_ASSERT(buf);
	t_fill(buf, 0, total, seed, ZERO_EVERY);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	T_ASSERT(fd >= 0);
	for (off = 0; off < total; off += 4096)
		if ((off >> 12) % ZERO_EVERY)
			T_EQ(pwrite(fd, buf + off, 4096, (off_t)off), 4096);
	T_EQ(ftruncate(fd, (off_t)total), 0);
	close(fd);
	free(buf);
}

/* What a run does besides serving: working sets, or a memory file that breaks under it. */
enum ws_mode { WS_NONE, WS_RECORD, WS_PREFETCH, WS_STALE, BROKEN_FILE, FROM_SNAPSHOT };

static const char *pagein_bin; /* the pagein command under test */
static bool no_check;          /* run the handler with --no-check */

static uint64_t t_now_ns_local(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What the handler reported (its --json summary). */
struct hstats {
	double faults, pages_demand, pages_prefetch, pages_zero, rezero, events_remove, wakes;
	double fault_errors, bytes_read;
	bool ws_refused, vmm_exited;
};

/* Start `pagein handler` on sock_path serving image; its stdout comes back on *out_fd. */
static pid_t handler_start(const char *sock_path, const char *image, enum ws_mode mode,
			   const char *ws_path, int *out_fd)
{
	char *args[16];
	int pfd[2], n = 0;
	pid_t pid;

	T_EQ(pipe(pfd), 0);
	args[n++] = (char *)pagein_bin;
	args[n++] = "handler";
	args[n++] = "--socket";
	args[n++] = (char *)sock_path;
	args[n++] = mode == FROM_SNAPSHOT ? "--from-file" : "--raw";
	args[n++] = (char *)image;
	args[n++] = "--json";
	if (no_check)
		args[n++] = "--no-check";
	args[n++] = "--accept-timeout";
	args[n++] = "20000";
	if (mode == WS_RECORD)
		args[n++] = "--record-ws";
	else if (mode == WS_PREFETCH || mode == WS_STALE)
		args[n++] = "--prefetch-ws";
	if (mode >= WS_RECORD && mode <= WS_STALE)
		args[n++] = (char *)ws_path;
	args[n] = NULL;
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		alarm(60);
		execv(pagein_bin, args);
		_exit(127);
	}
	close(pfd[1]);
	*out_fd = pfd[0];
	return pid;
}

/* A handler that dies while the VMM runs leaves the VMM's faults asleep forever (what a real
 * Firecracker does): the test fails at once instead, saying so. */
static _Atomic bool vmm_running;

static void *watchdog_main(void *arg)
{
	struct pollfd p = { .fd = (int)syscall(SYS_pidfd_open, *(pid_t *)arg, 0), .events = POLLIN };

	T_ASSERT(p.fd >= 0);
	while (atomic_load(&vmm_running))
		if (poll(&p, 1, 50) > 0 && atomic_load(&vmm_running)) {
			fprintf(stderr, "FAIL: pagein handler exited while the VMM was running\n");
			_exit(1);
		}
	close(p.fd);
	return NULL;
}

/* Wait for the handler to end on its own and read its summary. */
static void handler_wait(pid_t pid, int fd, struct hstats *hs)
{
	static char out[4096];
	struct t_json_object o;
	size_t len = 0;
	ssize_t got;
	int status;
	char *line;

	while ((got = read(fd, out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)got;
	out[len] = 0;
	close(fd);
	T_EQ(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "FAIL: pagein handler ended with status 0x%x; its output:\n%s\n",
			status, out);
		exit(1);
	}
	while (len && out[len - 1] == '\n')
		out[--len] = 0;
	line = strrchr(out, '{');
	if (!line || !t_json_parse_line(line, &o)) {
		fprintf(stderr, "FAIL: no JSON summary from pagein handler; its output:\n%s\n", out);
		exit(1);
	}
	hs->faults = t_json_num(&o, "faults");
	hs->pages_demand = t_json_num(&o, "pages_demand");
	hs->pages_prefetch = t_json_num(&o, "pages_prefetch");
	hs->pages_zero = t_json_num(&o, "pages_zero");
	hs->rezero = t_json_num(&o, "rezero");
	hs->events_remove = t_json_num(&o, "events_remove");
	hs->wakes = t_json_num(&o, "wakes");
	hs->fault_errors = t_json_num(&o, "fault_errors");
	hs->bytes_read = t_json_num(&o, "bytes_read");
	hs->ws_refused = t_json_get(&o, "ws_refused") && t_json_get(&o, "ws_refused")->b;
	hs->vmm_exited = t_json_get(&o, "vmm_exited") && t_json_get(&o, "vmm_exited")->b;
	T_ASSERT(hs->faults >= 0 && hs->pages_demand >= 0 && hs->wakes >= 0);
	T_ASSERT(hs->vmm_exited); /* it ended because the VMM did, not for another reason */
	printf("handler: %.0f faults, %.0f pages on demand, %.0f prefetched, %.0f zero, %.0f "
	       "re-zeroed after a discard, %.0f REMOVE events; ended on its own when the VMM "
	       "exited\n", hs->faults, hs->pages_demand, hs->pages_prefetch, hs->pages_zero,
	       hs->rezero, hs->events_remove);
}

/* ---- the VMM side ---- */

static void vm_map(struct vm *v)
{
	unsigned i;

	for (i = 0; i < NREG; i++) {
		if (v->kind == K_ANON || v->kind == K_HUGETLB) {
			int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
				 (v->kind == K_HUGETLB ? MAP_HUGETLB : 0);

			v->mem[i] = mmap(NULL, v->size[i], PROT_READ | PROT_WRITE, fl, -1, 0);
		} else {
			v->mem[i] = mmap(NULL, v->size[i], PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_NORESERVE, v->memfd, (off_t)v->off[i]);
		}
		T_ASSERT(v->mem[i] != MAP_FAILED);
	}
}

static void vm_uffd(struct vm *v)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	unsigned i;

	/* what Firecracker does: non-blocking, close-on-exec, REMOVE events for the balloon */
	v->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	T_ASSERT(v->uffd >= 0);
	T_EQ(ioctl(v->uffd, UFFDIO_API, &api), 0);
	for (i = 0; i < NREG; i++) {
		struct uffdio_register reg = { .range = { (uintptr_t)v->mem[i], v->size[i] },
					       .mode = UFFDIO_REGISTER_MODE_MISSING };

		T_EQ(ioctl(v->uffd, UFFDIO_REGISTER, &reg), 0);
	}
}

static int vm_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	int i;

	T_ASSERT(fd >= 0);
	T_ASSERT(strlen(path) < sizeof(a.sun_path));
	memcpy(a.sun_path, path, strlen(path) + 1);
	/* the handler is another process: its socket appears when it is ready */
	for (i = 0; i < 500; i++) {
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		T_ASSERT(errno == ENOENT || errno == ECONNREFUSED);
		usleep(10000);
	}
	fprintf(stderr, "FAIL: the handler did not listen on %s within 5 s\n", path);
	exit(1);
}

static void vm_send(struct vm *v, int sock)
{
	char json[1024];
	size_t len = 0;
	int fds[2] = { v->uffd, v->memfd };
	unsigned i;

	len += (size_t)snprintf(json + len, sizeof(json) - len, "[");
	for (i = 0; i < NREG; i++)
		len += (size_t)snprintf(json + len, sizeof(json) - len,
					"%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,"
					"\"page_size\":%llu,\"page_size_kib\":%llu}", i ? "," : "",
					(unsigned long long)(uintptr_t)v->mem[i],
					(unsigned long long)v->size[i], (unsigned long long)v->off[i],
					(unsigned long long)v->ps, (unsigned long long)v->ps);
	len += (size_t)snprintf(json + len, sizeof(json) - len, "]");
	T_EQ(pi_fc_send(sock, json, len, fds, v->memfd >= 0 ? 2 : 1), 0);
}

struct toucher {
	struct vm *v;
	unsigned id;
	unsigned stride;  /* touch pages whose index is a multiple of it (the working set) */
	bool skip_balloon; /* the balloon thread owns [BAL_OFF, +BAL_PAGES pages) */
	uint64_t pages, bad;
};

#define BAL_OFF (4ull << 20) /* file offset of the pages the balloon thread plays with */
#define BAL_PAGES 64
#define BAL_ROUNDS 20

/*
 * A balloon that inflates and deflates while the vCPU threads fault: each round it reads its
 * pages (the file's bytes before the first discard, zeros ever after) and discards them again,
 * so REMOVE events interleave with faults (and the installs they make fail EAGAIN meanwhile).
 */
static void *balloon_main(void *arg)
{
	struct vm *v = arg;
	uint8_t *base = v->mem[1] + (BAL_OFF - v->off[1]);
	uint64_t round, j, bad = 0;

	for (round = 0; round < BAL_ROUNDS; round++) {
		for (j = 0; j < BAL_PAGES; j++) {
			const uint8_t *p = base + j * 4096;
			bool ok = round ? p[0] == 0 && t_check(p, 0, 4096, 0, 1) == UINT64_MAX :
					  t_check(p, BAL_OFF + j * 4096, 4096, seed, ZERO_EVERY) ==
					  UINT64_MAX;

			bad += !ok;
		}
		/* shared memory keeps its page cache on DONTNEED: deflating it means a punch */
		T_EQ(madvise(base, BAL_PAGES * 4096, v->memfd >= 0 ? MADV_REMOVE : MADV_DONTNEED),
		     0);
	}
	return (void *)(uintptr_t)bad;
}

/* Touch the pages of this thread's share in random order and verify each whole. */
static void *touch_main(void *arg)
{
	struct toucher *t = arg;
	struct vm *v = t->v;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (t->id + 1), n = v->total / 4096, i, *order;

	order = malloc(sizeof(*order) * n);
	T_ASSERT(order);
	for (i = 0; i < n; i++)
		order[i] = i;
	for (i = n - 1; i > 0; i--) {
		uint64_t j = t_rand(&rng, i + 1), x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	/* every thread touches everything: many faults race on the same pages */
	for (i = 0; i < n; i++) {
		uint64_t off = order[i] * 4096, r = off < v->size[0] ? 0 : 1;

		const uint8_t *p = v->mem[r] + (off - v->off[r]);

		if (order[i] % t->stride || (t->skip_balloon && off - BAL_OFF < BAL_PAGES * 4096))
			continue;
		if (t_check(p, off, 4096, seed, ZERO_EVERY) != UINT64_MAX) {
			if (getenv("T_VERBOSE"))
				fprintf(stderr, "thread %u: page at offset %llu reads wrong (first bad "
					"word at %llu, value %llx)\n", t->id, (unsigned long long)off,
					(unsigned long long)t_check(p, off, 4096, seed, ZERO_EVERY),
					(unsigned long long)*(const uint64_t *)p);
			t->bad++;
		}
		t->pages++;
	}
	free(order);
	return NULL;
}

/* A restore of a VMM whose workload touches every page (balloon checks included), or in a
 * working-set mode every 3rd page only (recorded, or prefetched before the VMM starts touching
 * 300 ms after the hand-off, as Firecracker restores device state meanwhile). */
static sigjmp_buf bus_jmp;
static void *volatile bus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	bus_addr = si->si_addr;
	siglongjmp(bus_jmp, 1);
}

/* The memory file is cut short after the hand-off: a page beyond the cut cannot be served, so
 * the VMM's access gets SIGBUS (not a hang, not zeros), and pages before the cut still come. */
static void broken_file(struct vm *v, const char *image)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	volatile uint8_t *beyond = v->mem[1] + 4096, *before = v->mem[0] + 8192;
	uint64_t word = 0;

	/* a first fault served means the handler has the file open: then cut it */
	T_EQ(t_check((const void *)before, 8192, 4096, seed, ZERO_EVERY), UINT64_MAX);
	T_EQ(truncate(image, 2 << 20), 0);
	T_EQ(sigaction(SIGBUS, &sa, NULL), 0);
	if (sigsetjmp(bus_jmp, 1) == 0) {
		word = *(volatile uint64_t *)beyond;
		fprintf(stderr, "FAIL: a page beyond the cut read %llx instead of SIGBUS\n",
			(unsigned long long)word);
		exit(1);
	}
	T_ASSERT(bus_addr == (void *)beyond);
	T_EQ(t_check((const void *)(before + 4096), 12288, 4096, seed, ZERO_EVERY), UINT64_MAX);
	printf("vmm anon, memory file cut short under the handler: the page beyond the cut got "
	       "SIGBUS at its address, a page before it still came right\n");
}

/* The VMM: a process of its own, as Firecracker is; it exits when its workload is done, and
 * its exit is what ends the handler. Exits 0 when every check passed. */
static void vmm_main(enum kind kind, enum ws_mode mode, const char *sock_path, const char *image,
		     pid_t hpid)
{
	struct vm v = { .kind = kind, .memfd = -1 };
	struct toucher t[THREADS];
	pthread_t th[THREADS], wd, bal;
	uint64_t bad = 0, pages = 0, i, discard_pages = 0, ps;
	int sock;
	uint8_t *never;

	v.ps = ps = kind == K_HUGETLB || kind == K_HUGETLB_MEMFD ? 2u << 20 : 4096;
	v.size[0] = 4u << 20;
	v.size[1] = 2u << 20;
	v.off[1] = v.size[0];
	v.total = v.size[0] + v.size[1];
	atomic_store(&vmm_running, true);
	T_EQ(pthread_create(&wd, NULL, watchdog_main, &hpid), 0);

	if (kind == K_MEMFD || kind == K_HUGETLB_MEMFD) {
		v.memfd = memfd_create("guest", MFD_CLOEXEC | (kind == K_HUGETLB_MEMFD ? MFD_HUGETLB : 0));
		T_ASSERT(v.memfd >= 0);
		T_EQ(ftruncate(v.memfd, (off_t)v.total), 0);
	}
	vm_map(&v);
	vm_uffd(&v);
	sock = vm_connect(sock_path);
	vm_send(&v, sock);
	if (kind == K_MEMFD) {
		/* a VMM may close the socket once it has sent the hand-off: it is still served
		 * (Firecracker keeps it open; the VMM's exit is its process's, not the socket's) */
		close(sock);
		sock = -1;
	}

	if (mode == BROKEN_FILE) {
		broken_file(&v, image);
		goto exit_vmm;
	}
	if (mode != WS_NONE && mode != FROM_SNAPSHOT) {
		if (mode == WS_PREFETCH)
			usleep(300000);
		for (i = 0; i < THREADS; i++) {
			t[i] = (struct toucher){ .v = &v, .id = (unsigned)i, .stride = 3 };
			T_EQ(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
		}
		for (i = 0; i < THREADS; i++) {
			T_EQ(pthread_join(th[i], NULL), 0);
			bad += t[i].bad;
			pages += t[i].pages;
		}
		T_EQ(bad, 0);
		printf("vmm %s, working set %s: %d threads verified %llu page reads (every 3rd "
		       "page)\n", kind_name[kind], mode == WS_RECORD ? "recorded" :
		       mode == WS_PREFETCH ? "prefetched" : "stale (image rewritten)",
		       THREADS, (unsigned long long)pages);
		goto exit_vmm;
	}

	/* balloon before any touch: the last page of region 1 is given up untouched; it must
	 * read zeros, never the file's bytes */
	never = v.mem[1] + v.size[1] - ps;
	T_EQ(madvise(never, ps, MADV_DONTNEED), 0);

	for (i = 0; i < THREADS; i++) {
		t[i] = (struct toucher){ .v = &v, .id = (unsigned)i, .stride = 1,
					 .skip_balloon = ps == 4096 };
		T_EQ(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
	}
	if (ps == 4096)
		T_EQ(pthread_create(&bal, NULL, balloon_main, &v), 0);
	for (i = 0; i < THREADS; i++) {
		T_EQ(pthread_join(th[i], NULL), 0);
		bad += t[i].bad;
		pages += t[i].pages;
	}
	if (ps == 4096) {
		void *bbad;

		T_EQ(pthread_join(bal, &bbad), 0);
		T_EQ((uintptr_t)bbad, 0); /* never the file's bytes after a discard */
	}
	/* the untouched discarded page read zeros: each thread saw exactly its 4 KiB pages where
	 * the file has data as "wrong", and nothing else */
	{
		uint64_t want = 0, off0 = v.off[1] + v.size[1] - ps;

		for (i = 0; i < ps; i += 4096)
			want += ((off0 + i) >> 12) % ZERO_EVERY != 0;
		T_EQ(bad, THREADS * want);
	}
	for (i = 0; i < ps; i += 8)
		T_EQ(*(volatile uint64_t *)(never + i), 0);

	/* balloon after touch: the guest writes, then the balloon discards */
	discard_pages = ps == 4096 ? 16 : 1;
	for (i = 0; i < discard_pages; i++)
		*(volatile uint64_t *)(v.mem[0] + ps * (2 * i + 1)) = 0xb0b0;
	T_EQ(madvise(v.mem[0], ps * 2 * discard_pages, MADV_DONTNEED), 0);
	for (i = 0; i < discard_pages; i++) {
		volatile uint64_t *w = (volatile uint64_t *)(v.mem[0] + ps * (2 * i + 1));

		if (v.memfd < 0) {
			T_EQ(*w, 0); /* private: the discard is a fresh zero page */
		} else {
			T_EQ(*w, 0xb0b0); /* shared: the page cache keeps the guest's bytes */
		}
	}
	if (v.memfd >= 0) {
		/* a punched hole in shared memory reads zeros: the handler must not refill it */
		T_EQ(madvise(v.mem[0], ps * 2 * discard_pages, MADV_REMOVE), 0);
		for (i = 0; i < discard_pages; i++)
			T_EQ(*(volatile uint64_t *)(v.mem[0] + ps * (2 * i + 1)), 0);
	}
	printf("vmm %s%s: %d regions, %llu MiB, %d threads verified %llu page reads in random order; "
	       "balloon: %llu discard+re-read rounds during the faults read zeros, an untouched "
	       "discarded %s page read zeros, %llu written pages discarded read %s\n",
	       kind_name[kind], mode == FROM_SNAPSHOT ? " (from a pagein snapshot)" : "", NREG,
	       (unsigned long long)(v.total >> 20), THREADS,
	       (unsigned long long)pages, (unsigned long long)(ps == 4096 ? BAL_ROUNDS : 0),
	       ps == 4096 ? "4 KiB" : "2 MiB",
	       (unsigned long long)discard_pages,
	       v.memfd < 0 ? "zeros" : "the guest's bytes, then zeros after a hole punch");

exit_vmm:
	fflush(stdout);
	/* the VMM exits: its memory, uffd and socket go; the handler must notice and end */
	atomic_store(&vmm_running, false);
	T_EQ(pthread_join(wd, NULL), 0);
	for (i = 0; i < NREG; i++)
		munmap(v.mem[i], v.size[i]);
	close(v.uffd);
	if (sock >= 0)
		close(sock);
	if (v.memfd >= 0)
		close(v.memfd);
	exit(0);
}

static void run(enum kind kind, const char *image_dir, enum ws_mode mode, struct hstats *hst)
{
	struct hstats hs;
	char ws_path[300];
	char sock_path[256], image[256];
	struct vm v = { .kind = kind, .memfd = -1 };
	uint64_t ps, discard_pages, balloon_refaults;
	int hout, status;
	pid_t hpid, vpid;

	v.ps = ps = kind == K_HUGETLB || kind == K_HUGETLB_MEMFD ? 2u << 20 : 4096;
	discard_pages = ps == 4096 ? 16 : 1;
	balloon_refaults = ps == 4096 ? BAL_PAGES * (BAL_ROUNDS - 1) : 0;
	v.size[0] = 4u << 20;
	v.size[1] = 2u << 20;
	v.off[1] = v.size[0];
	v.total = v.size[0] + v.size[1];
	if (ps > 4096)
		t_require_hugepages((unsigned)(v.total / ps) + 1);
	snprintf(sock_path, sizeof(sock_path), "%s/fc.sock", image_dir);
	snprintf(image, sizeof(image), "%s/mem.img", image_dir);
	snprintf(ws_path, sizeof(ws_path), "%s/ws", image_dir);
	if (mode == WS_STALE)
		seed = SEED + 1; /* a new image in the same file: the recorded set is stale */
	if (mode == FROM_SNAPSHOT) {
		/* the same bytes as a pagein snapshot, its regions at other guest addresses:
		 * the handler maps the VMM's regions onto them in order */
		struct pagein_region_desc d[2] = { { 0, v.size[0], 0, 0, 0 },
						   { 1ull << 32, v.size[1], 0, 0, 0 } };
		uint8_t *buf = malloc(v.total);
		const void *data[2];

		T_ASSERT(buf);
		t_fill(buf, 0, v.total, seed, ZERO_EVERY);
		data[0] = buf;
		data[1] = buf + v.size[0];
		snprintf(image, sizeof(image), "%s/vm.snap", image_dir);
		T_EQ(pagein_snapshot_save(image, d, data, 2), 0);
		free(buf);
	} else if (mode != WS_PREFETCH) {
		make_image(image, v.total); /* prefetch: the image the set was recorded from */
	}
	unlink(sock_path);
	/* the private hugetlb run goes unchecked: the handler then knows the memory only by
	 * the page size the VMM sent, and must still install zeros the hugetlb way */
	no_check = kind == K_HUGETLB;
	hpid = handler_start(sock_path, image, mode, ws_path, &hout);
	fflush(stdout);
	vpid = fork();
	T_ASSERT(vpid >= 0);
	if (vpid == 0)
		vmm_main(kind, mode, sock_path, image, hpid);
	T_EQ(waitpid(vpid, &status, 0), vpid);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "FAIL: the VMM process ended with status 0x%x\n", status);
		kill(hpid, SIGTERM);
		exit(1);
	}
	handler_wait(hpid, hout, &hs);
	if (mode == BROKEN_FILE)
		T_EQ(hs.fault_errors, 1); /* the one page beyond the cut, poisoned; serving went on */
	if (mode == WS_NONE || mode == FROM_SNAPSHOT) {
		/* the untouched discarded page and the discarded written pages came back as
		 * zeros from the handler (for memfd: after the hole punch) */
		/* (a duplicate message, seen under load, can add one per thread) */
		T_ASSERT(hs.rezero >= 1 + discard_pages + balloon_refaults &&
			 hs.rezero <= 1 + discard_pages + balloon_refaults + THREADS);
		T_ASSERT(hs.events_remove >= 2);
	}
	if (hst)
		*hst = hs;
}

/* Record a working set in one restore, prefetch it in the next: the second restore takes far
 * fewer faults and every byte is still right. */
static void run_ws(const char *dir)
{
	struct hstats rec, pre, stale;

	run(K_ANON, dir, WS_RECORD, &rec);
	run(K_ANON, dir, WS_PREFETCH, &pre);
	run(K_ANON, dir, WS_STALE, &stale);
	seed = SEED;
	printf("working set: recording restore %.0f faults; prefetching restore %.0f faults, "
	       "%.0f pages prefetched in %.0f wakes\n", rec.faults, pre.faults,
	       pre.pages_prefetch, pre.wakes);
	T_EQ(rec.pages_demand, 512); /* every 3rd of 1536 pages */
	T_EQ(pre.pages_prefetch + pre.pages_demand, 512);
	/* the prefetch races the workload (faults keep priority): how much it wins by is the
	 * machine's (a sanitizer build on a loaded host won only 26 pages of 512 with a 50 ms
	 * head start); that it installs pages and spares faults is the set's */
	T_ASSERT(pre.pages_prefetch > 0);
	T_ASSERT(pre.faults < rec.faults);
	/* the image changed since: the set's bytes must not be installed, faults serve it all */
	T_ASSERT(stale.ws_refused);
	T_EQ(stale.pages_prefetch, 0);
	T_EQ(stale.pages_demand, 512);
	printf("working set of an older image refused; %.0f faults served the new one right\n",
	       stale.faults);
}


/* ---- bench: REAP's and FaaSnap's comparison, over the hand-off ---- */

/* Whether page i of the image is in the bench workload's working set (a fixed quarter). */
static bool bench_in_set(uint64_t i)
{
	return (i * 0x9e3779b97f4a7c15ull) >> 62 == 0;
}

struct bench_toucher {
	struct vm *v;
	unsigned id;
	uint64_t bad;
};

/* Touch this thread's share of the working set in random order, checking every page. */
static void *bench_touch(void *arg)
{
	struct bench_toucher *t = arg;
	struct vm *v = t->v;
	uint64_t n = v->total / 4096, k = 0, i, *order, rng = 77 + t->id;

	order = malloc(sizeof(*order) * (n / THREADS + 1));
	T_ASSERT(order);
	for (i = t->id; i < n; i += THREADS)
		if (bench_in_set(i))
			order[k++] = i;
	for (i = k; i > 1; i--) {
		uint64_t j = t_rand(&rng, i), x = order[i - 1];

		order[i - 1] = order[j];
		order[j] = x;
	}
	for (i = 0; i < k; i++) {
		uint64_t off = order[i] * 4096, r = off < v->size[0] ? 0 : 1;

		t->bad += t_check(v->mem[r] + (off - v->off[r]), off, 4096, seed, ZERO_EVERY) !=
			  UINT64_MAX;
	}
	free(order);
	return NULL;
}

/* The bench VMM: hand-off, then the workload; *ms gets hand-off to workload end. */
static void bench_vmm(const char *sock_path, uint64_t size, double *ms)
{
	struct vm v = { .kind = K_ANON, .memfd = -1, .ps = 4096 };
	struct bench_toucher t[THREADS];
	pthread_t th[THREADS];
	uint64_t t0, bad = 0;
	int sock, i;

	v.size[0] = v.size[1] = size / 2;
	v.off[1] = size / 2;
	v.total = size;
	vm_map(&v);
	vm_uffd(&v);
	sock = vm_connect(sock_path);
	t0 = t_now_ns_local();
	vm_send(&v, sock);
	for (i = 0; i < THREADS; i++) {
		t[i] = (struct bench_toucher){ .v = &v, .id = (unsigned)i };
		T_EQ(pthread_create(&th[i], NULL, bench_touch, &t[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		T_EQ(pthread_join(th[i], NULL), 0);
		bad += t[i].bad;
	}
	*ms = (t_now_ns_local() - t0) / 1e6;
	T_EQ(bad, 0);
	exit(0);
}

static bool drop_caches(void)
{
	FILE *f;

	sync();
	f = fopen("/proc/sys/vm/drop_caches", "w");
	if (!f)
		return false;
	fputs("3\n", f);
	return fclose(f) == 0;
}

/* One bench restore: handler with extra args, caches dropped or not. */
static void bench_one(const char *dir, const char *label, uint64_t size, const char *ws,
		      bool cold, bool record, double *ms_out, struct hstats *hs)
{
	char sock_path[256], image[256];
	double *ms = mmap(NULL, sizeof(*ms), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			  -1, 0);
	int hout, status;
	pid_t hpid, vpid;

	T_ASSERT(ms != MAP_FAILED);
	snprintf(sock_path, sizeof(sock_path), "%s/fc.sock", dir);
	snprintf(image, sizeof(image), "%s/mem.img", dir);
	if (cold && !drop_caches())
		t_skip("bench: cannot drop the page cache (needs root)");
	unlink(sock_path);
	hpid = handler_start(sock_path, image, ws ? (record ? WS_RECORD : WS_PREFETCH) : WS_NONE,
			     ws, &hout);
	fflush(stdout);
	vpid = fork();
	T_ASSERT(vpid >= 0);
	if (vpid == 0)
		bench_vmm(sock_path, size, ms);
	T_EQ(waitpid(vpid, &status, 0), vpid);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	handler_wait(hpid, hout, hs);
	*ms_out = *ms;
	printf("  %-38s %9.1f ms %9.0f faults %9.1f MiB read\n", label, *ms, hs->faults,
	       hs->bytes_read / 1048576.0);
	fflush(stdout);
	munmap(ms, sizeof(*ms));
}

/* The table: pure on-demand, working-set prefetch and an eager full read, each with the page
 * cache dropped first, and a warm (memory-cached) on-demand restore. */
static void run_bench(const char *dir, uint64_t size)
{
	char image[256], ws[256], full[256], err[PI_ERRLEN];
	struct pagein_raw_region l[2];
	struct pagein_source *src;
	struct hstats rec, pre, eager, warm;
	double t_rec, t_pre, t_eager, t_warm;
	uint64_t *all, i, n = size / 4096;

	snprintf(image, sizeof(image), "%s/mem.img", dir);
	snprintf(ws, sizeof(ws), "%s/bench.ws", dir);
	snprintf(full, sizeof(full), "%s/full.ws", dir);
	make_image(image, size);
	/* the eager read: every page, in order, as one working set (one sequential read); its
	 * image identity is the handler's: the same file with the VMM's two regions */
	l[0] = (struct pagein_raw_region){ 0, size / 2, 0, 0 };
	l[1] = (struct pagein_raw_region){ size / 2, size / 2, size / 2, 0 };
	T_EQ(pagein_source_raw_new(image, l, 2, err, sizeof(err), &src), 0);
	all = malloc(n * sizeof(*all));
	T_ASSERT(all);
	for (i = 0; i < n; i++)
		all[i] = i * 4096;
	T_EQ(pi_ws_write(full, all, n, 4096, pagein_source_raw_image_id(src), src, err,
			 sizeof(err)), 0);
	free(all);
	pagein_source_free(src);
	printf("bench: %llu MiB image, %d vCPU threads touching a fixed quarter of it in random "
	       "order; time from the hand-off to the end of the workload\n",
	       (unsigned long long)(size >> 20), THREADS);
	bench_one(dir, "on-demand, cold (records the set)", size, ws, true, true, &t_rec, &rec);
	bench_one(dir, "working-set prefetch, cold", size, ws, true, false, &t_pre, &pre);
	bench_one(dir, "eager full read, cold", size, full, true, false, &t_eager, &eager);
	bench_one(dir, "on-demand, warm (file cached)", size, NULL, false, false, &t_warm, &warm);
	printf("bench: prefetch vs on-demand %.2fx faster, %.1f%% fewer faults; prefetch vs warm "
	       "%+.1f%%; eager vs on-demand %.2fx\n", t_rec / t_pre,
	       100.0 * (1 - pre.faults / (rec.faults ? rec.faults : 1)),
	       100.0 * (t_pre / t_warm - 1), t_rec / t_eager);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_fc_vmm_XXXXXX", cmd_rm[300];
	int k, only = -1;
	bool ws = argc > 1 && !strcmp(argv[1], "ws");

	if (argc > 1 && !strcmp(argv[1], "bench")) {
		uint64_t size = argc > 2 ? strtoull(argv[2], NULL, 0) << 20 : 64ull << 20;

		pagein_bin = t_pagein_bin(argv[0]);
		t_require_uffd();
		T_ASSERT(mkdtemp(dir) && size >= 8ull << 20);
		run_bench(dir, size);
		snprintf(cmd_rm, sizeof(cmd_rm), "rm -rf %s", dir);
		T_EQ(system(cmd_rm), 0);
		return 0;
	}
	if (argc > 1 && !ws) {
		for (k = 0; k < 4; k++)
			if (!strcmp(argv[1], kind_name[k]))
				only = k;
		if (only < 0) {
			fprintf(stderr, "usage: %s [anon|memfd|hugetlb|hugetlb-memfd|ws|bench [MiB]]\n",
				argv[0]);
			return 1;
		}
	}
	pagein_bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	alarm(100);
	for (k = 0; k < 4 && !ws; k++) {
		if (only >= 0 && k != only)
			continue;
		if (only < 0 && (k == K_HUGETLB || k == K_HUGETLB_MEMFD)) {
			/* all four: huge pages are optional, the rest is not */
			pid_t c;
			int st;

			fflush(stdout);
			c = fork();
			T_ASSERT(c >= 0);
			if (c == 0) {
				run((enum kind)k, dir, WS_NONE, NULL);
				exit(0);
			}
			T_EQ(waitpid(c, &st, 0), c);
			T_ASSERT(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 77));
			continue;
		}
		run((enum kind)k, dir, WS_NONE, NULL);
	}
	if (ws || only < 0)
		run_ws(dir);
	if (only < 0 && !ws) {
		run(K_ANON, dir, BROKEN_FILE, NULL);
		run(K_ANON, dir, FROM_SNAPSHOT, NULL);
		/* 4 KiB VMMs are served by an engine space; the single-thread server (huge pages,
		 * no pidfd) must stay right for them too */
		printf("(the same anon and memfd restores through the single-thread server)\n");
		setenv("PAGEIN_HANDLER_SIMPLE", "1", 1);
		run(K_ANON, dir, WS_NONE, NULL);
		run(K_MEMFD, dir, WS_NONE, NULL);
		run(K_ANON, dir, BROKEN_FILE, NULL);
		unsetenv("PAGEIN_HANDLER_SIMPLE");
	}
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		T_EQ(system(cmd), 0);
	}
	t_pass("fc_vmm: a Firecracker-style VMM restored through pagein as its handler");
}
