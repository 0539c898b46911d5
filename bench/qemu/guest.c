// SPDX-License-Identifier: MIT
/*
 * bench/qemu/guest.c - /init of the guest that bench/qemu.sh migrates with QEMU's post-copy.
 * Built static, it is the whole initramfs. It fills PAGEIN_QEMU_MIB (default 1024) MiB of
 * anonymous memory with the image `pagein demo` serves (tools/pattern.h, seed 42, every 16th page
 * zero: the same bytes, so both sides move the same data), says FILLED on the console, then reads
 * one word of every page in order, again and again, like `pagein demo`'s sequential workload, and
 * checks each word against the pattern. At most once a second it prints a pass line with the
 * count of wrong words so far, so the destination's console proves the migrated memory is right.
 * PAGEIN_QEMU_IDLE=1 (kernel command line): one checking pass every 10 s, asleep in between, so
 * that the migration is mostly QEMU's background stream and the vCPU thread leaves the CPU.
 * It is not part of the pagein command (which links every bench/ C file): it has its own folder.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"

#define SEED 42
#define ZERO_EVERY 16

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The kernel's built-in rootfs normally gives /dev/console; if stdout is not open, mount
 * devtmpfs and use the serial port directly. */
static void console(void)
{
	int fd;

	if (fcntl(1, F_GETFD) >= 0)
		return;
	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	fd = open("/dev/ttyS0", O_RDWR | O_NOCTTY);
	if (fd < 0)
		fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
	}
}

int main(void)
{
	const char *env = getenv("PAGEIN_QEMU_MIB"), *idle = getenv("PAGEIN_QEMU_IDLE");
	uint64_t mib = env ? strtoull(env, NULL, 10) : 1024, len, pages, bad = 0, pass = 0;
	volatile uint64_t *w;
	uint8_t *mem;
	double t0, last;

	console();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (mib == 0 || mib > (1u << 20))
		mib = 1024;
	len = mib << 20;
	pages = len >> 12;
	t0 = now_s();
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		   -1, 0);
	if (mem == MAP_FAILED) {
		printf("PAGEIN-QEMU-ERROR mmap of %llu MiB failed\n", (unsigned long long)mib);
		for (;;)
			pause();
	}
	/* The pattern of guest address i (offset into the area), like pagein's image at gpa i. */
	pattern_fill(mem, 0, len, SEED, ZERO_EVERY);
	printf("PAGEIN-QEMU-FILLED %llu MiB in %.2f s\n", (unsigned long long)mib, now_s() - t0);
	last = now_s();
	/* Bounded by the host: bench/qemu.sh kills the VM once the migration is measured. */
	for (;;) {
		for (uint64_t p = 0; p < pages; p++) {
			uint64_t off = p << 12 | (p & 511) << 3;

			w = (volatile uint64_t *)(mem + off);
			if (*w != pattern_at(SEED, off, ZERO_EVERY))
				bad++;
		}
		pass++;
		if (idle && *idle == '1')
			sleep(10);
		if (now_s() - last >= 1.0) {
			last = now_s();
			printf("PAGEIN-QEMU-PASS %llu bad %llu\n", (unsigned long long)pass,
			       (unsigned long long)bad);
		}
	}
}
