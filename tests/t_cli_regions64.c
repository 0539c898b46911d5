// SPDX-License-Identifier: MIT
/*
 * t_cli_regions64.c - `pagein restore --from-file` of a snapshot with 64 regions (the format's
 * limit) either restores and verifies all 64, or refuses with a clear error and a failing exit
 * code; it never reads past its own region table (it had 32 entries) and never reports success
 * for memory it did not restore.
 */
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000
#define NREG 64
#define REG_SIZE (64u << 10)
#define SEED 0x64

static const char *bin;
static char out[1 << 16], err[1 << 16];

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_regions64.XXXXXX", snap[64], want[64];
	struct pagein_region_desc regs[NREG];
	const void *data[NREG];
	uint8_t *img;
	unsigned i, verified = 0;
	char *p;
	int rc;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/r64.snap", dir);
	img = malloc((size_t)NREG * REG_SIZE);
	T_ASSERT(img);
	for (i = 0; i < NREG; i++) {
		/* one region per MiB, so a region list cut short shows */
		regs[i] = (struct pagein_region_desc){ .gpa = (uint64_t)i << 20, .size = REG_SIZE };
		t_fill(img + (size_t)i * REG_SIZE, regs[i].gpa, REG_SIZE, SEED, 7);
		data[i] = img + (size_t)i * REG_SIZE;
	}
	T_EQ(pagein_snapshot_save(snap, regs, data, NREG), 0);
	free(img);

	rc = t_exit_code(t_run_status(bin, (char *[]){ "pagein", "restore", "--from-file", snap,
						     "-q", NULL }, out, sizeof(out), err,
				      sizeof(err), RUN_MS, NULL));
	for (p = out; (p = strstr(p, ": verified")); p++)
		verified++;
	snprintf(want, sizeof(want), "region %u gpa 0x%x", NREG - 1, (NREG - 1) << 20);
	if (rc == 0) {
		T_CHECK(verified == NREG && strstr(out, want) && strstr(out, "every region verified"),
			"exit 0 with %u of %d regions verified: %s", verified, NREG, out);
		printf("  restored and verified all %d regions\n", NREG);
	} else {
		T_CHECK(rc > 0 && rc != 65, "exit %d: want 0, or a refusal", rc);
		/* it names the count it cannot hold, not a size read from past its table */
		T_CHECK((strstr(err, "of 64") || strstr(err, "at most")) &&
			!strstr(err, "runtime error") && !strstr(err, "whole number"),
			"the refusal does not say why: %s", err);
		T_CHECK(!strstr(out, "every region verified"), "success reported: %s", out);
		printf("  refused (exit %d): %s", rc, err);
	}
	unlink(snap);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_regions64");
}
