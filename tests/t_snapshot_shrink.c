// SPDX-License-Identifier: MIT
/*
 * t_snapshot_shrink.c - a snapshot file cut short after it was opened is an error, not zeros:
 * pages past the new end fail with -EIO (never served as zero pages), while trailing holes of
 * an intact file are zero pages and pages before the cut still arrive with their bytes.
 */
#include <unistd.h>

#include "helpers.h"

#define SIZE (1ull << 20)
#define SEED 21

int main(void)
{
	char path[] = "/tmp/pagein-shrink-XXXXXX";
	struct pagein_region_desc reg = { .gpa = 0, .size = SIZE };
	struct pagein_config cfg;
	struct pagein_source *src;
	struct pagein_space *s;
	const void *data[1];
	uint8_t *img, *host;
	uint64_t w;
	int fd;

	t_require_uffd();
	alarm(30);
	img = calloc(1, SIZE);
	T_ASSERT(img);
	t_fill(img, 0, SIZE / 2, SEED, 0); /* the second half is zero: trailing holes */
	data[0] = img;
	fd = mkstemp(path);
	T_ASSERT(fd >= 0);
	close(fd);
	T_EQ(pagein_snapshot_save(path, &reg, data, 1), 0);

	pagein_config_init(&cfg);
	cfg.log = t_log;
	cfg.fault_around = 1;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_add(s, 0, SIZE, PAGEIN_BACKING_ANON, (void **)&host), 0);
	T_EQ(pagein_source_file_new(path, &src), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	/* intact: a trailing hole is a zero page */
	T_EQ(pagein_read(s, SIZE - 4096, &w, 8), 0);
	T_EQ(w, 0);
	/* cut the file to a quarter of the data, under the open source */
	T_ASSERT(truncate(path, 4096 + SIZE / 4) == 0);
	T_EQ(pagein_read(s, SIZE / 2 - 4096, &w, 8), -EIO);  /* data that is gone */
	T_EQ(pagein_read(s, SIZE - 2 * 4096, &w, 8), -EIO);  /* a hole that is gone */
	T_EQ(pagein_read(s, 4096, &w, 8), 0);                /* before the cut: intact */
	T_EQ(w, t_word(SEED, 4096));
	pagein_space_free(s);
	pagein_source_free(src);
	unlink(path);
	free(img);
	t_pass("a snapshot cut short under an open source fails its pages with EIO, not zeros");
}
