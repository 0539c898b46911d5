// SPDX-License-Identifier: MIT
/*
 * t_no_poison.c - on a kernel without UFFD_FEATURE_POISON (before Linux 6.6; simulated with the
 * library's internal override) handler mode is refused with an error that names the kernel
 * needed, since a failed fetch could otherwise only end on a zero page. SELF mode, which fails
 * a fault with SIGBUS in the faulting thread itself, still works.
 */
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "uapi.h"

int main(void)
{
	struct pagein_config cfg;
	struct pagein_space *s = NULL;
	int ret;

	t_require_uffd();
	alarm(30);
	pi_hooks.hide_features = UFFD_FEATURE_POISON;
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.log = t_log;
	t_last_log[0] = 0;
	ret = pagein_space_new(&cfg, &s);
	if (ret == 0) {
		printf("FAIL: handler mode was accepted without UFFD_FEATURE_POISON "
		       "(granted features %#llx)\n", (unsigned long long)s->features);
		pagein_space_free(s);
		return 1;
	}
	T_EQ(ret, -ENOSYS);
	T_ASSERT(strstr(t_last_log, "6.6"));
	T_ASSERT(strstr(t_last_log, "POISON"));
	printf("  handler refused: %s\n", t_last_log);

	cfg.frontend = PAGEIN_FRONTEND_SELF;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_ASSERT(!(s->features & UFFD_FEATURE_POISON));
	pagein_space_free(s);
	t_pass("no UFFD_FEATURE_POISON: handler mode refused, self mode works");
}
