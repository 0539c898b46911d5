// SPDX-License-Identifier: MIT
/*
 * t_kvm_exits.c - what KVM_RUN tells a VMM about guest memory it cannot fault in, and what
 * pagein_kvm_* make of it: KVM_CAP_MEMORY_FAULT_INFO, refusal of spaces that cannot back KVM,
 * real unannotated EFAULTs (PROT_NONE memory, a SIGBUS-mode userfaultfd) that must not be retried,
 * a fetch failure, and the annotated KVM_EXIT_MEMORY_FAULT path (synthesised: stock kernels only
 * annotate private-memory faults; the real exits of pagein's KVM patch are t_kvm_eom_*'s). With
 * that patch the fetch failure arrives as an exit (-EIO from pagein_kvm_handle_run) instead of
 * SIGBUS; both are accepted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvmvm.h"

#define SEED 0x5eed0005ull
#define SIZE (2ull << 20)
#define GPA_PROT_NONE (2ull << 30)       /* slot 5: PROT_NONE host memory */
#define GPA_UFFD_SIGBUS (3ull << 30)     /* slot 6: a userfaultfd in SIGBUS mode */
#define EXIT_MEMORY_FAULT 39             /* KVM_EXIT_MEMORY_FAULT (Linux 6.8+) */
#define MEMORY_EXIT_FLAG_PRIVATE (1ull << 3)

static int fails;

#define CHECK(cond, ...) \
	do { \
		if (cond) { \
			printf("  ok: " __VA_ARGS__); \
		} else { \
			printf("  FAIL (%s:%d): ", __FILE__, __LINE__); \
			printf(__VA_ARGS__); \
			fails++; \
		} \
	} while (0)

/* What the first failing KVM_RUN looked like before pagein interpreted it. */
struct raw_seen {
	struct h_space *hs;
	int err;
	uint32_t exit_reason;
	uint64_t mf[3];  /* run->memory_fault as KVM left it */
	int handled;     /* pagein_kvm_handle_run's return */
	int calls;
};

static int raw_hook(void *arg, int vcpu_fd, struct kvm_run *run, int err)
{
	struct raw_seen *r = arg;
	int ret;

	if (err && !r->calls++) {
		r->err = err;
		r->exit_reason = run->exit_reason;
		memcpy(r->mf, (char *)run + offsetof(struct kvm_run, mmio), sizeof(r->mf));
	}
	ret = h_space_hook(r->hs, vcpu_fd, run, err);
	if (err)
		r->handled = ret;
	return ret;
}

static const char *err_name(int err)
{
	switch (-err) {
	case 0: return "0";
	case EFAULT: return "EFAULT";
	case EHWPOISON: return "EHWPOISON";
	case EINTR: return "EINTR";
	case EINVAL: return "EINVAL";
	default: return strerror(-err);
	}
}

/*
 * Run vCPU 0 on one page at gpa; print what KVM said and what pagein made of it. must_fail: the
 * kernel cannot give the vCPU that memory, so KVM_RUN has to fail; otherwise what happens is
 * the kernel's business and only "never retried, never misreported" is checked.
 */
static void bare_case(struct h_vm *vm, struct h_space *hs, const char *what, uint64_t gpa,
		      bool must_fail)
{
	struct raw_seen r = { .hs = hs };
	int ret;

	vm->hook = raw_hook;
	vm->hook_arg = &r;
	memset(&hs->last, 0, sizeof(hs->last));
	h_vcpu_setup(vm, 0, gpa, 1, gpa, gpa + H_PAGE);
	ret = h_vm_run(vm);
	vm->hook = h_space_hook;
	vm->hook_arg = hs;
	if (r.calls == 0) {
		printf("bare EFAULT, %s: KVM_RUN did not fail on this kernel: the vCPU read 0x%016"
		       PRIx64 " from the page (0: a zero page) and finished\n", what,
		       vm->vcpu[0].read_sum);
		CHECK(!must_fail && ret == 0, "%s: no failure to interpret\n", what);
		return;
	}
	printf("bare EFAULT, %s: KVM_RUN -> -1 errno %s, exit_reason %u, run->memory_fault "
	       "{flags 0x%" PRIx64 ", gpa 0x%" PRIx64 ", size 0x%" PRIx64 "} (stale/undefined "
	       "unless exit_reason is 39)\n", what, err_name(r.err), r.exit_reason, r.mf[0], r.mf[1],
	       r.mf[2]);
	printf("bare EFAULT, %s: pagein_kvm_handle_run -> %s; info: annotated %d, gpa %s, rip "
	       "0x%" PRIx64 ", MEMORY_FAULT_INFO %d; vCPU entered %" PRIu64 " time(s)\n", what,
	       err_name(r.handled), hs->last.annotated,
	       hs->last.gpa == PAGEIN_KVM_GPA_UNKNOWN ? "unknown" : "known", hs->last.rip,
	       hs->last.memory_fault_info, vm->vcpu[0].runs);
	CHECK(ret == -EFAULT && r.err == -EFAULT && r.handled == -EFAULT && !hs->last.annotated,
	      "%s: a bare EFAULT is reported as -EFAULT with no gpa\n", what);
	CHECK(vm->vcpu[0].runs == 1, "%s: not retried (one KVM_RUN)\n", what);
}

static int uffd_sigbus(void *mem, uint64_t len)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_SIGBUS };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)mem, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0 || ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* The annotated path, with a run structure filled in as KVM_EXIT_MEMORY_FAULT would be. */
static void annotated_cases(struct h_space *hs)
{
	uint8_t *buf = calloc(1, 4096);
	struct kvm_run *run = (struct kvm_run *)buf;
	uint64_t *mf = (uint64_t *)(buf + offsetof(struct kvm_run, mmio));
	uint64_t gpa = hs->gpa + 5 * H_PAGE, word = 0, before, after, total;
	struct pagein_kvm_fault f;
	struct pagein_stats st;
	int ret, n;

	if (!buf) {
		fails++;
		return;
	}
	pagein_residency(hs->space, &before, &total);
	run->exit_reason = EXIT_MEMORY_FAULT;
	mf[0] = 0, mf[1] = gpa + 24, mf[2] = 8;
	ret = pagein_kvm_handle_run(hs->space, -1, run, -EFAULT, &f);
	pagein_residency(hs->space, &after, &total);
	pagein_stats_get(hs->space, &st);
	pagein_read(hs->space, gpa + 8, &word, sizeof(word));
	printf("annotated: exit 39 {flags 0, gpa 0x%" PRIx64 ", size 8} -> %d (PAGEIN_KVM_REENTER "
	       "= %d), pages present %" PRIu64 " -> %" PRIu64 ", faults_kvm %" PRIu64 "\n",
	       gpa + 24, ret, PAGEIN_KVM_REENTER, before, after, st.faults_kvm);
	CHECK(ret == PAGEIN_KVM_REENTER && f.annotated && f.gpa == gpa + 24 && f.size == 8,
	      "annotated memory fault resolved, re-enter\n");
	CHECK(after > before && word == h_pattern(SEED, gpa + 8) && st.faults_kvm == 1,
	      "the faulting page is present with the source's bytes, counted in faults_kvm\n");
	CHECK(run->exit_reason == KVM_EXIT_UNKNOWN, "the annotation is consumed (exit_reason 0)\n");

	/* KVM faulting on the same gpa again and again must end, not loop */
	for (n = 1; n < 100; n++) {
		run->exit_reason = EXIT_MEMORY_FAULT;
		ret = pagein_kvm_handle_run(hs->space, -1, run, -EFAULT, &f);
		if (ret != PAGEIN_KVM_REENTER)
			break;
	}
	CHECK(ret == -EFAULT && n < 20, "the same gpa faulting again after resolve: -EFAULT after "
	      "%d more exits\n", n);

	run->exit_reason = EXIT_MEMORY_FAULT;
	mf[0] = MEMORY_EXIT_FLAG_PRIVATE, mf[1] = gpa, mf[2] = 4096;
	ret = pagein_kvm_handle_run(hs->space, -1, run, -EFAULT, &f);
	CHECK(ret == -EFAULT && f.annotated, "a private-memory fault is refused with -EFAULT\n");

	run->exit_reason = EXIT_MEMORY_FAULT;
	mf[0] = 0, mf[1] = gpa, mf[2] = 4096;
	ret = pagein_kvm_handle_run(hs->space, -1, run, -EHWPOISON, &f);
	CHECK(ret == -EHWPOISON, "EHWPOISON is passed back, not retried\n");

	run->exit_reason = EXIT_MEMORY_FAULT;
	mf[0] = 0, mf[1] = 1ull << 40, mf[2] = 4096;
	ret = pagein_kvm_handle_run(hs->space, -1, run, -EFAULT, &f);
	CHECK(ret == -EINVAL, "an annotated gpa outside the space: %d (-EINVAL)\n", ret);

	run->exit_reason = KVM_EXIT_IO;
	CHECK(pagein_kvm_handle_run(hs->space, -1, run, 0, NULL) == 0,
	      "an ordinary exit is left to the caller (0)\n");
	CHECK(pagein_kvm_handle_run(hs->space, -1, run, -EINTR, NULL) == -EINTR,
	      "EINTR is passed through\n");
	free(buf);
}

/* Refusals: a SELF space and a space not started yet cannot be attached. */
static void refusal_cases(struct h_vm *vm)
{
	struct pagein_config c;
	struct pagein_space *s;
	struct pagein_source *src;
	void *host, *img = calloc(1, SIZE);
	int ret;

	pagein_config_init(&c);
	c.log = h_log;
	c.frontend = PAGEIN_FRONTEND_SELF;
	if (!img || pagein_space_new(&c, &s) < 0) {
		fails++;
		free(img);
		return;
	}
	pagein_source_mem_new(img, 1ull << 32, SIZE, &src);
	pagein_region_add(s, 1ull << 32, SIZE, PAGEIN_BACKING_ANON, &host);
	pagein_space_set_source(s, src);
	ret = pagein_space_start(s);
	printf("refusal: SELF space (start %d), pagein_kvm_attach:\n", ret);
	ret = pagein_kvm_attach(s, vm->vm_fd, 7);
	CHECK(ret == -EINVAL, "a SELF space is refused: %d (-EINVAL)\n", ret);
	pagein_space_free(s);

	c.frontend = PAGEIN_FRONTEND_HANDLER;
	if (pagein_space_new(&c, &s) == 0) {
		pagein_region_add(s, 1ull << 32, SIZE, PAGEIN_BACKING_ANON, &host);
		pagein_space_set_source(s, src);
		printf("refusal: HANDLER space not started yet, pagein_kvm_attach:\n");
		ret = pagein_kvm_attach(s, vm->vm_fd, 7);
		CHECK(ret == -EINVAL, "an unstarted space is refused: %d (-EINVAL)\n", ret);
		pagein_space_free(s);
	}
	pagein_source_free(src);
	free(img);
}

/* A fetch that fails for good: what the vCPU thread sees (in a child: it may be a signal). */
static int failing_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
			 uint64_t *zero_mask, uint64_t deadline_ns)
{
	(void)ctx, (void)gpa, (void)dst, (void)len, (void)page_size, (void)zero_mask;
	(void)deadline_ns;
	return -EIO;
}

static void nothing(void *ctx)
{
	(void)ctx;
}

static void fetch_failure_case(void)
{
	static const struct pagein_source_ops ops = { .fetch = failing_fetch, .destroy = nothing };
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct pagein_source *src;
		struct pagein_config c;
		struct h_space hs;
		struct h_vm vm;
		char msg[256];
		struct raw_seen r = { .hs = &hs };
		int ret;

		h_watchdog("fetch failure (child)", 15);
		pagein_config_init(&c);
		c.frontend = PAGEIN_FRONTEND_HANDLER;
		c.timeout_ms = 2000;
		if (h_vm_new(&vm, 1, msg) < 0 || pagein_source_new(&ops, NULL, &src) < 0 ||
		    h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, SIZE, SEED, &c, src, msg) < 0)
			_exit(3);
		vm.hook = raw_hook;
		vm.hook_arg = &r;
		h_vcpu_setup(&vm, 0, hs.gpa, 1, hs.gpa, hs.gpa + H_PAGE);
		ret = h_vm_run(&vm);
		printf("fetch failure: KVM_RUN -> errno %s, exit_reason %u; pagein_kvm_handle_run "
		       "-> %s; h_vm_run %s\n", err_name(r.err), r.exit_reason, err_name(r.handled),
		       err_name(ret));
		fflush(stdout);
		_exit(ret < 0 ? 0 : 4);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		fails++;
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 1)
		printf("fetch failure: the vCPU never came back from a page the source cannot "
		       "give\n");
	if (WIFSIGNALED(status))
		printf("fetch failure: the vCPU process was killed by signal %d (%s): a page the "
		       "source cannot give arrives as SIGBUS on the vCPU thread (KVM turns the "
		       "poisoned page into a signal); a VMM must handle SIGBUS on vCPU threads\n",
		       WTERMSIG(status), strsignal(WTERMSIG(status)));
	CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
	      (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS),
	      "a failed fetch stops the vCPU (error or SIGBUS), it never runs on wrong bytes\n");
}

int main(void)
{
	struct utsname u;
	struct h_space hs;
	struct h_vm vm;
	char msg[256];
	void *pn, *sb;
	int ret, cap, ufd;

	h_watchdog("t_kvm_exits", 45);
	ret = h_vm_new(&vm, 1, msg);
	if (ret < 0) {
		printf("t_kvm_exits: %s: %s\n", ret == -ENODEV ? "SKIP" : "FAIL", msg);
		return ret == -ENODEV ? 77 : 1;
	}
	uname(&u);
	cap = pagein_kvm_memory_fault_info(vm.kvm_fd);
	printf("kernel %s: KVM_CAP_MEMORY_FAULT_INFO = %d (on the VM fd: %d), KVM_CAP_USER_MEMORY2 "
	       "= %d\n", u.release, cap, h_vm_cap(&vm, 232), h_vm_cap(&vm, 231));

	refusal_cases(&vm);

	ret = h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, SIZE, SEED, NULL, NULL, msg);
	if (ret < 0) {
		printf("t_kvm_exits: FAIL: %s\n", msg);
		return 1;
	}
	CHECK(1, "a started HANDLER space attaches (slot %d)\n", H_SPACE_SLOT);

	pn = mmap(NULL, SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sb = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	H_ASSERT(pn != MAP_FAILED && sb != MAP_FAILED);
	H_ASSERT(h_vm_add_mem(&vm, 5, GPA_PROT_NONE, SIZE, pn) == 0);
	bare_case(&vm, &hs, "PROT_NONE host memory", GPA_PROT_NONE, true);
	ufd = uffd_sigbus(sb, SIZE);
	if (ufd < 0) {
		printf("bare EFAULT, userfaultfd SIGBUS mode: not run: %s\n", strerror(-ufd));
	} else {
		H_ASSERT(h_vm_add_mem(&vm, 6, GPA_UFFD_SIGBUS, SIZE, sb) == 0);
		bare_case(&vm, &hs, "userfaultfd in SIGBUS mode (what a SELF space would do)",
			  GPA_UFFD_SIGBUS, false);
		close(ufd);
	}
	annotated_cases(&hs);
	h_space_free(&hs, &vm);
	h_vm_free(&vm);

	fetch_failure_case();

	printf("t_kvm_exits: %s\n", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}
