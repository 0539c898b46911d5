// SPDX-License-Identifier: MIT
/*
 * t_kvm_fc.c - the Firecracker hand-off with real vCPUs: this program is the VMM. It maps two
 * regions of guest memory (anonymous, 2 MiB-aligned, MAP_NORESERVE) as KVM memslots, registers
 * them with a userfaultfd (EVENT_REMOVE, missing faults), starts `pagein handler` on a raw memory
 * file, hands it the uffd and the region JSON, and runs two vCPUs over the memory: every page
 * they touch arrives through KVM's own faults on the adopted memory, served by the handler in
 * another process. Then every byte is checked and the VMM exits; the handler must end on its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvmvm.h"

#define NVCPUS 2
#define REGION (4ull << 20) /* one region, one memslot, one vCPU's slice */
#define SEED 0x51fc
#define SOCK "/tmp/t_kvm_fc.sock"
#define IMAGE "/tmp/t_kvm_fc.mem"

/* Send json with fd as SCM_RIGHTS, as Firecracker does. */
static int send_handoff(int sock, const char *json, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { (void *)json, strlen(json) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			      .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == (ssize_t)strlen(json) ? 0 : -1;
}

static int connect_retry(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), i;

	if (fd < 0)
		return -1;
	memcpy(a.sun_path, path, strlen(path) + 1);
	for (i = 0; i < 1000; i++) {
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		usleep(10000);
	}
	close(fd);
	return -1;
}

/* The VMM: a process of its own (the handler watches it exit). Returns its exit status. */
static int vmm(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	char msg[256], json[512];
	uint8_t *mem[NVCPUS];
	struct h_vm vm;
	int uffd, sock, ret;
	size_t len = 0;
	unsigned i;

	ret = h_vm_new(&vm, NVCPUS, msg);
	if (ret < 0) {
		printf("t_kvm_fc: %s: %s\n", ret == -ENODEV ? "SKIP" : "FAIL", msg);
		return ret == -ENODEV ? 77 : 1;
	}
	/* guest memory as Firecracker maps it, registered before the hand-off */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	H_ASSERT(uffd >= 0 && ioctl(uffd, UFFDIO_API, &api) == 0);
	len += (size_t)snprintf(json + len, sizeof(json) - len, "[");
	for (i = 0; i < NVCPUS; i++) {
		struct uffdio_register reg;

		mem[i] = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		H_ASSERT(mem[i] != MAP_FAILED);
		reg = (struct uffdio_register){ .range = { (uintptr_t)mem[i], REGION },
						.mode = UFFDIO_REGISTER_MODE_MISSING };
		H_ASSERT(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
		H_ASSERT(h_vm_add_mem(&vm, 1 + i, H_MEM_GPA + i * REGION, REGION, mem[i]) == 0);
		len += (size_t)snprintf(json + len, sizeof(json) - len,
					"%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%llu"
					",\"offset\":%llu,\"page_size\":4096,"
					"\"page_size_kib\":4096}", i ? "," : "",
					(uint64_t)(uintptr_t)mem[i], REGION, i * REGION);
	}
	snprintf(json + len, sizeof(json) - len, "]");
	sock = connect_retry(SOCK);
	H_ASSERT(sock >= 0);
	H_ASSERT(send_handoff(sock, json, uffd) == 0);

	for (i = 0; i < NVCPUS; i++)
		H_ASSERT(h_vcpu_setup(&vm, i, H_MEM_GPA + i * REGION, REGION / H_PAGE,
				      H_MEM_GPA + i * REGION, H_MEM_GPA + (i + 1) * REGION) == 0);
	ret = h_vm_run(&vm);
	if (ret < 0) {
		for (i = 0; i < NVCPUS; i++)
			if (vm.vcpu[i].err)
				printf("t_kvm_fc: FAIL: %s\n", vm.vcpu[i].why);
		return 1;
	}
	h_print_vcpus(&vm, "fc handoff");
	H_ASSERT(h_check_sums(&vm, "fc handoff", SEED) == 0);
	for (i = 0; i < NVCPUS; i++)
		H_ASSERT(h_verify("fc handoff", mem[i], H_MEM_GPA + i * REGION, REGION, SEED, NULL) ==
			 0);
	fflush(stdout);
	return 0; /* exiting drops the VM, the memory, the uffd and the socket */
}

int main(void)
{
	const char *bin = getenv("PAGEIN_BIN") ? getenv("PAGEIN_BIN") : "/bin/pagein";
	char out[2048];
	uint8_t *img;
	int fd, pfd[2], status;
	size_t len = 0;
	ssize_t got;
	pid_t hpid, vpid;

	h_watchdog("t_kvm_fc", 150);
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		printf("t_kvm_fc: SKIP: no /dev/kvm here\n");
		return 77;
	}
	if (access(bin, X_OK) < 0) {
		printf("t_kvm_fc: SKIP: no static pagein at %s\n", bin);
		return 77;
	}
	/* the memory file: region i's bytes at offset i * REGION, the pattern of its gpas */
	img = malloc(NVCPUS * REGION);
	H_ASSERT(img);
	h_fill(img, H_MEM_GPA, NVCPUS * REGION, SEED);
	fd = open(IMAGE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	H_ASSERT(fd >= 0 && write(fd, img, NVCPUS * REGION) == (ssize_t)(NVCPUS * REGION));
	close(fd);
	free(img);

	/* the handler, another process */
	H_ASSERT(pipe(pfd) == 0);
	unlink(SOCK);
	fflush(stdout);
	hpid = fork();
	H_ASSERT(hpid >= 0);
	if (hpid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(bin, bin, "handler", "--socket", SOCK, "--raw", IMAGE, "--json",
		      "--accept-timeout", "60000", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	vpid = fork();
	H_ASSERT(vpid >= 0);
	if (vpid == 0)
		_exit(vmm());
	H_ASSERT(waitpid(vpid, &status, 0) == vpid);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		kill(hpid, SIGTERM);
		waitpid(hpid, NULL, 0);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
			return 77;
		printf("t_kvm_fc: FAIL: the VMM ended with status 0x%x\n", status);
		return 1;
	}
	/* the VMM is gone: the handler must notice and end on its own */
	while ((got = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)got;
	out[len] = 0;
	H_ASSERT(waitpid(hpid, &status, 0) == hpid);
	printf("t_kvm_fc: handler said: %s", out);
	H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	H_ASSERT(strstr(out, "\"vmm_exited\":true") && strstr(out, "\"fault_errors\":0"));
	unlink(IMAGE);
	printf("t_kvm_fc: PASS: two vCPUs ran on memory a separate pagein handler filled through the "
	       "VMM's userfaultfd\n");
	return 0;
}
