// SPDX-License-Identifier: MIT
/*
 * t_features.c - a space records the userfaultfd features it enabled, not the whole list the
 * kernel reports back from UFFDIO_API: features the library never asks for (WP_*, MOVE) must
 * not appear, and the front-end's own (SIGBUS for self) must. THREAD_ID is asked for (per-vCPU
 * handler-fault counts, lib/kvm.c), so it appears exactly when the kernel grants it.
 */
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "uapi.h"

int main(void)
{
	struct pagein_config cfg;
	struct pagein_space *s;
	uint64_t never = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

	t_require_uffd();
	alarm(30);
	pagein_config_init(&cfg);
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	if (s->features & never) {
		printf("FAIL: space features %#llx hold bits never asked for (%#llx)\n",
		       (unsigned long long)s->features, (unsigned long long)(s->features & never));
		return 1;
	}
	T_ASSERT(s->features & UFFD_FEATURE_SIGBUS);
	pagein_space_free(s);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_ASSERT(!(s->features & (never | UFFD_FEATURE_SIGBUS)));
	pagein_space_free(s);
	t_pass("features record what was enabled");
}
