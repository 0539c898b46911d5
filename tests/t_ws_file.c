// SPDX-License-Identifier: MIT
/*
 * t_ws_file.c - working-set files (lib/wsfile.c, docs/working-set.md): a touch order written and
 * read back gives the same pages in the same order, adjacent pages merged into runs, repeats
 * dropped, zero pages stored without bytes, the bytes in touch order; a run table larger than
 * one block; and damaged files (foreign, header bit flip, data bit flip, truncated) each refused
 * with its own error before a byte of them could be installed.
 */
#include <fcntl.h>
#include <unistd.h>

#include "helpers.h"
#include "vmm.h"

#define SEED 31
#define SIZE (16ull << 20)

/* Expand a working set back into its page order, and check each page's bytes. */
static uint64_t expand(struct pi_ws *ws, const uint8_t *data, uint64_t *out, uint64_t max)
{
	uint64_t n = 0, off = 0, i;
	uint32_t r;

	for (r = 0; r < ws->nruns; r++)
		for (i = 0; i < ws->runs[r].npages; i++) {
			uint64_t gpa = ws->runs[r].gpa + i * ws->page_size;

			T_ASSERT(n < max);
			out[n++] = gpa;
			if (ws->runs[r].flags & PI_WS_ZERO) {
				T_ASSERT((gpa >> 12) % 7 == 0);
			} else {
				T_EQ(t_check(data + off, gpa, ws->page_size, SEED, 7), UINT64_MAX);
				off += ws->page_size;
			}
		}
	T_EQ(off, ws->data_len);
	return n;
}

static void flip(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	T_ASSERT(fd >= 0);
	T_EQ(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x10;
	T_EQ(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

int main(void)
{
	char path[] = "/tmp/t_ws_XXXXXX", err[PI_ERRLEN];
	struct pagein_source *src;
	uint64_t *order, *back, n = 0, i, got;
	uint8_t *img, *data;
	struct pi_ws ws;
	int fd;

	fd = mkstemp(path);
	T_ASSERT(fd >= 0);
	close(fd);
	img = malloc(SIZE);
	order = malloc(sizeof(*order) * 8192);
	back = malloc(sizeof(*back) * 8192);
	T_ASSERT(img && order && back);
	t_fill(img, 0, SIZE, SEED, 7);
	T_EQ(pagein_source_mem_new(img, 0, SIZE, &src), 0);

	/* a touch order: a sequential stretch, a backward stretch, repeats, a stride (many runs) */
	for (i = 100; i < 164; i++)
		order[n++] = i * 4096;
	for (i = 50; i > 40; i--)
		order[n++] = i * 4096;
	order[n++] = 100 * 4096; /* repeat: dropped */
	for (i = 0; i < 600; i++)
		order[n++] = (1000 + i * 3) * 4096; /* 600 runs: the table outgrows one block */
	order[n++] = 45 * 4096; /* repeat: dropped */

	T_EQ(pi_ws_write(path, order, n, 4096, 0x1234, src, err, sizeof(err)), 0);
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), 0);
	T_EQ(ws.image_id, 0x1234);
	T_EQ(ws.page_size, 4096);
	T_EQ(ws.npages, n - 2);
	T_ASSERT(ws.nruns >= 1 + 10 + 600 && ws.nruns < 1 + 10 + 600 + 64);
	T_ASSERT(ws.data_off > 4096); /* the table did outgrow the first block */
	data = malloc(ws.data_len);
	T_ASSERT(data);
	T_EQ(pi_ws_read_data(&ws, data, err, sizeof(err)), 0);
	got = expand(&ws, data, back, 8192);
	T_EQ(got, n - 2);
	/* touch order kept, less the two repeats (at 74 and at the end) */
	T_EQ(memcmp(back, order, 74 * sizeof(*back)), 0);
	T_EQ(memcmp(back + 74, order + 75, (n - 76) * sizeof(*back)), 0);
	printf("  %llu touches -> %llu pages in %u runs, %llu bytes of page data, table %llu "
	       "bytes\n", (unsigned long long)n, (unsigned long long)ws.npages, ws.nruns,
	       (unsigned long long)ws.data_len, (unsigned long long)ws.data_off);
	free(data);
	pi_ws_close(&ws);

	/* a short sequential set: one run, data right after one block */
	T_EQ(pi_ws_write(path, order, 64, 4096, 1, src, err, sizeof(err)), 0);
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), 0);
	T_EQ(ws.nruns, 19); /* pages 105, 112 .. 161 are zero: 9 zero runs split it into 10 */
	T_EQ(ws.data_off, 4096);
	pi_ws_close(&ws);

	/* misaligned pages are refused */
	order[0] = 100;
	T_EQ(pi_ws_write(path, order, 1, 4096, 1, src, err, sizeof(err)), -EINVAL);
	order[0] = 100 * 4096;
	/* a page outside the image: the write fails and leaves no file behind */
	order[1] = SIZE;
	T_EQ(pi_ws_write("/tmp/t_ws_never", order, 2, 4096, 1, src, err, sizeof(err)), -EINVAL);
	T_ASSERT(access("/tmp/t_ws_never", F_OK) < 0 && access("/tmp/t_ws_never.tmp", F_OK) < 0);
	printf("  refused page outside the image: %s\n", err);
	order[1] = 101 * 4096;

	/* damaged files */
	T_EQ(pi_ws_write(path, order, 64, 4096, 1, src, err, sizeof(err)), 0);
	flip(path, 17); /* the image id: caught by the header digest */
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), -EINVAL);
	printf("  refused header bit flip: %s\n", err);
	T_EQ(pi_ws_write(path, order, 64, 4096, 1, src, err, sizeof(err)), 0);
	flip(path, 4096 + 5000); /* inside the page data */
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), 0);
	data = malloc(ws.data_len);
	T_ASSERT(data);
	T_EQ(pi_ws_read_data(&ws, data, err, sizeof(err)), -EIO);
	printf("  refused data bit flip: %s\n", err);
	free(data);
	pi_ws_close(&ws);
	T_EQ(pi_ws_write(path, order, 64, 4096, 1, src, err, sizeof(err)), 0);
	T_EQ(truncate(path, 4096 + 4096), 0);
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), -ENODATA);
	printf("  refused truncated file: %s\n", err);
	fd = open(path, O_WRONLY | O_TRUNC);
	T_ASSERT(fd >= 0);
	T_EQ(write(fd, "PAGEINSN", 8), 8);
	close(fd);
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), -EINVAL);
	printf("  refused foreign file: %s\n", err);

	pagein_source_free(src);
	unlink(path);
	free(img);
	free(order);
	free(back);
	t_pass("ws_file: working sets round-trip in touch order, damaged files refused");
}
