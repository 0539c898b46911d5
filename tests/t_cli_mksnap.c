// SPDX-License-Identifier: MIT
/*
 * t_cli_mksnap.c - `pagein mksnap` never leaves a partial snapshot and never overwrites one by
 * accident: a write that runs out of room (a file-size limit stands in for a full disk) fails
 * with exit 71 and leaves no file at all in the directory, an existing snapshot is kept (exit 2)
 * unless --force is given, and --force replaces it whole.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000

static const char *bin;
static char out[1 << 16], err[1 << 16];

/* In the child: files stop growing at 1 MiB (EFBIG, as ENOSPC would stop them), no SIGXFSZ. */
static void small_files(void)
{
	struct rlimit rl = { 1 << 20, 1 << 20 };

	signal(SIGXFSZ, SIG_IGN);
	setrlimit(RLIMIT_FSIZE, &rl);
}

static int run(char *const *args, void (*setup)(void))
{
	return t_exit_code(t_run_status(bin, args, out, sizeof(out), err, sizeof(err), RUN_MS,
					 setup));
}

/* Names in dir other than . and .. */
static unsigned entries(const char *dir)
{
	struct dirent *d;
	unsigned n = 0;
	DIR *dp = opendir(dir);

	T_ASSERT(dp);
	while ((d = readdir(dp)))
		n += strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
	closedir(dp);
	return n;
}

/* The snapshot's region digests, as pagein restore would check them. */
static uint64_t digest0(const char *path)
{
	struct pagein_region_desc r[4];

	T_ASSERT(pagein_snapshot_regions(path, r, 4) == 2);
	return r[0].digest;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_mksnap.XXXXXX", snap[64];
	struct stat sb;
	uint64_t d1;
	mode_t um;
	int rc;

	bin = t_pagein_bin(argv[0]);
	T_ASSERT(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/s.snap", dir);

	/* out of room: nothing left behind, neither at the path nor beside it */
	rc = run((char *[]){ "pagein", "mksnap", "--size", "8M", snap, NULL }, small_files);
	T_CHECK(rc == 71, "mksnap past the file-size limit: exit %d, want 71: %s", rc, err);
	T_CHECK(stat(snap, &sb) < 0, "a partial %s (%lld bytes) was left", snap, (long long)sb.st_size);
	T_CHECK(entries(dir) == 0, "%u files left in %s", entries(dir), dir);
	printf("  out of room: exit %d, nothing left\n", rc);

	rc = run((char *[]){ "pagein", "mksnap", "--size", "4M", "--seed", "1", snap, NULL }, NULL);
	T_ASSERT(rc == 0);
	d1 = digest0(snap);
	rc = run((char *[]){ "pagein", "mksnap", "--size", "4M", "--seed", "2", snap, NULL }, NULL);
	T_CHECK(rc == 2 && strstr(err, "--force"), "overwrite without --force: exit %d: %s", rc, err);
	T_CHECK(digest0(snap) == d1, "the existing snapshot was changed");
	printf("  existing file kept without --force: exit %d\n", rc);
	rc = run((char *[]){ "pagein", "mksnap", "--force", "--size", "4M", "--seed", "2", snap,
			     NULL }, NULL);
	T_CHECK(rc == 0 && digest0(snap) != d1, "--force: exit %d, replaced %d", rc,
		digest0(snap) != d1);
	T_CHECK(entries(dir) == 1, "%u files in %s after --force, want 1", entries(dir), dir);
	um = umask(0);
	umask(um);
	/* the temporary file's 0600 must not stick: a snapshot is made like any other file */
	T_CHECK(stat(snap, &sb) == 0 && (sb.st_mode & 0777) == (0666 & ~um), "mode %o, want %o",
		sb.st_mode & 0777, 0666 & ~um);
	printf("  --force replaced it\n");

	unlink(snap);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_mksnap");
}
