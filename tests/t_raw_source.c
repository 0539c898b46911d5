// SPDX-License-Identifier: MIT
/*
 * t_raw_source.c - the raw image source (lib/rawsrc.c): a flat memory file with a layout of two
 * regions (the second at a gap in guest addresses, the file back to back, like Firecracker's
 * memory file). Holes and all-zero pages come back as zero pages, data pages byte for byte, both
 * through fetch and through a real space restored from it; a file shorter than its layout, a
 * misaligned or overlapping layout, a bad layout string, and a file cut short after it was
 * opened are each refused with a clear error, never served as zeros.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "vmm.h"

#define SEED 23
#define R0 (1ull << 20) /* region 0: gpa 0, 1 MiB */
#define R1 (512ull << 10) /* region 1: gpa 4 GiB, 512 KiB */
#define GPA1 (4ull << 30)

/* The image byte at file offset off: the victim pattern of the gpa it belongs to; the first
 * 64 KiB of region 0 are a hole, every 5th page is written as zeros. */
static void make_image(const char *path, uint64_t extra_cut)
{
	uint8_t *buf = malloc(R0 + R1);
	int fd;

	T_ASSERT(buf);
	t_fill(buf, 0, R0, SEED, 5);
	t_fill(buf + R0, GPA1, R1, SEED, 5);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	T_ASSERT(fd >= 0);
	/* the hole: never written, so SEEK_DATA skips it */
	T_EQ(pwrite(fd, buf + 65536, R0 + R1 - 65536 - extra_cut, 65536),
	     (ssize_t)(R0 + R1 - 65536 - extra_cut));
	close(fd);
	free(buf);
}

static bool want_zero(uint64_t gpa)
{
	return gpa < 65536 || (gpa >> 12) % 5 == 0;
}

static void check_fetch(struct pagein_source *src)
{
	uint8_t *dst = malloc(64 * 4096);
	uint64_t gpa, zm, i;

	T_ASSERT(dst);
	for (gpa = 0; gpa < R0; gpa += 64 * 4096) {
		zm = 0;
		memset(dst, 0xee, 64 * 4096);
		T_EQ(src->ops.fetch(src->ctx, gpa, dst, 64 * 4096, 4096, &zm, 0), 0);
		for (i = 0; i < 64; i++) {
			uint64_t g = gpa + i * 4096;

			if (want_zero(g)) {
				T_ASSERT(zm >> i & 1);
			} else {
				T_ASSERT(!(zm >> i & 1));
				T_EQ(t_check(dst + i * 4096, g, 4096, SEED, 5), UINT64_MAX);
			}
		}
	}
	zm = 0;
	T_EQ(src->ops.fetch(src->ctx, GPA1 + 4096, dst, 2 * 4096, 4096, &zm, 0), 0);
	T_EQ(zm, 0);
	T_EQ(t_check(dst, GPA1 + 4096, 8192, SEED, 5), UINT64_MAX);
	/* outside the layout, or across its end */
	T_EQ(src->ops.fetch(src->ctx, R0, dst, 4096, 4096, &zm, 0), -EINVAL);
	T_EQ(src->ops.fetch(src->ctx, GPA1 + R1 - 4096, dst, 8192, 4096, &zm, 0), -EINVAL);
	T_ASSERT(src->ops.covers(src->ctx, GPA1, R1));
	T_ASSERT(!src->ops.covers(src->ctx, GPA1, R1 + 4096));
	free(dst);
}

/* A real space over the raw source: every byte right, zero pages installed as zero pages. */
static void check_space(struct pagein_source *src)
{
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_stats st;
	void *h0, *h1;

	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_add(s, 0, R0, PAGEIN_BACKING_ANON, &h0), 0);
	T_EQ(pagein_region_add(s, GPA1, R1, PAGEIN_BACKING_ANON, &h1), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	for (uint64_t g = 0; g < R0; g += 4096) {
		uint64_t bad = t_check((uint8_t *)h0 + g, g, 4096, SEED, 5);

		if (g < 65536) /* the hole: zeros where the pattern has data */
			T_ASSERT(((uint64_t *)h0)[g / 8] == 0 && (g % 20480 == 0 || bad == g));
		else
			T_EQ(bad, UINT64_MAX);
	}
	T_EQ(t_check(h1, GPA1, R1, SEED, 5), UINT64_MAX);
	pagein_stats_get(s, &st);
	printf("  space over the raw file: %llu pages installed, %llu of them zero pages\n",
	       (unsigned long long)(st.pages_demand + st.pages_around),
	       (unsigned long long)st.pages_zero);
	T_ASSERT(st.pages_zero >= 16 + (R0 - 65536 + R1) / 4096 / 5);
	pagein_space_free(s);
}

int main(void)
{
	char path[] = "/tmp/t_raw_XXXXXX", err[PI_ERRLEN];
	struct pagein_raw_region l[4];
	struct pagein_source *src;
	int fd, n;

	fd = mkstemp(path);
	T_ASSERT(fd >= 0);
	close(fd);

	/* layout strings */
	n = pagein_raw_layout_parse("0+1M,0x100000000+512K", l, 4, err, sizeof(err));
	T_EQ(n, 2);
	T_EQ(l[0].offset, 0);
	T_EQ(l[1].gpa, GPA1);
	T_EQ(l[1].offset, R0); /* back to back in the file, like Firecracker's */
	T_EQ(l[1].size, R1);
	n = pagein_raw_layout_parse("0x1000+8K@64k", l, 4, err, sizeof(err));
	T_EQ(n, 1);
	T_EQ(l[0].offset, 65536);
	T_EQ(pagein_raw_layout_parse("", l, 4, err, sizeof(err)), -EINVAL);
	T_EQ(pagein_raw_layout_parse("0+1M;4096+4K", l, 4, err, sizeof(err)), -EINVAL);
	printf("  refused layout \"0+1M;4096+4K\": %s\n", err);
	T_EQ(pagein_raw_layout_parse("0+", l, 4, err, sizeof(err)), -EINVAL);
	T_EQ(pagein_raw_layout_parse("0+99999999999999999999", l, 4, err, sizeof(err)), -EINVAL);
	T_EQ(pagein_raw_layout_parse("0+4K,8K+4K,16K+4K", l, 2, err, sizeof(err)), -E2BIG);
	T_EQ(pagein_raw_layout_parse("0+1M,0x100000000+512K", l, 4, err, sizeof(err)), 2);

	/* a file shorter than its layout: refused at creation, naming the region */
	make_image(path, 4096);
	T_EQ(pagein_source_raw_new(path, l, 2, err, sizeof(err), &src), -ENODATA);
	T_ASSERT(strstr(err, "shorter than its layout") && strstr(err, "region 1"));
	printf("  refused short file: %s\n", err);

	/* misaligned, empty, overlapping layouts */
	{
		struct pagein_raw_region b[2] = { { 0, 4096, 100, 0 }, { 0, 0, 0, 0 } };

		T_EQ(pagein_source_raw_new(path, b, 1, err, sizeof(err), &src), -EINVAL);
		printf("  refused misaligned layout: %s\n", err);
		b[0] = (struct pagein_raw_region){ 0, 8192, 0, 0 };
		b[1] = (struct pagein_raw_region){ 4096, 4096, 8192, 0 };
		T_EQ(pagein_source_raw_new(path, b, 2, err, sizeof(err), &src), -EINVAL);
		T_ASSERT(strstr(err, "overlap"));
		T_EQ(pagein_source_raw_new(path, b, 0, err, sizeof(err), &src), -EINVAL);
		T_EQ(pagein_source_raw_new("/nonexistent/x", l, 2, err, sizeof(err), &src), -ENOENT);
	}

	/* the whole image: holes and zero pages are zero pages, the rest byte for byte */
	make_image(path, 0);
	T_EQ(pagein_source_raw_new(path, l, 2, err, sizeof(err), &src), 0);
	T_ASSERT(pagein_source_raw_image_id(src) != 0);
	check_fetch(src);
	t_require_uffd();
	check_space(src);

	/* cut short after it was checked: the missing tail is an error, never zeros */
	T_EQ(truncate(path, R0 + R1 - 8192), 0);
	{
		uint8_t dst[8192];
		uint64_t zm = 0;

		T_EQ(src->ops.fetch(src->ctx, GPA1 + R1 - 8192, dst, 8192, 4096, &zm, 0), -EIO);
		/* a range that is all holes but past the new end is an error too */
		T_EQ(truncate(path, R0), 0);
		zm = 0;
		T_EQ(src->ops.fetch(src->ctx, GPA1, dst, 8192, 4096, &zm, 0), -EIO);
	}
	pagein_source_free(src);
	unlink(path);
	t_pass("raw_source: holes and zero pages are zero pages, short files refused");
}
