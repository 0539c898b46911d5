# SPDX-License-Identifier: MIT
# kvm.mk - the KVM test tier, included by the top Makefile. `make test-kvm` installs what the tier
# needs, fetches the guest kernel, links tests/kvm/t_kvm_*.c and the pagein command statically
# (the guest has no libc) and boots them under QEMU (kvm/tier.sh). `make kvm-tests` only builds.
# The vCPU harness is tests/kvmvm.c, the same object the pagein command links; the tests' shared
# helpers (tests/helpers.c) are compiled into $(B)/kvm for the static programs.

KVM_TEST_SRC := $(sort $(wildcard tests/kvm/t_kvm_*.c))
KVM_TESTS    := $(KVM_TEST_SRC:tests/kvm/%.c=$(B)/kvm/%)
KVM_HARNESS  := $(B)/tests/kvmvm.o
KVM_THELP    := $(B)/kvm/helpers.o

.PHONY: test-kvm kvm-tests kvm-deps kvm-sanity

kvm-deps:
	$(Q)bash scripts/deps.sh kvm

# Sanitizer runtimes do not link -static: the tier is built from the plain build only.
kvm-sanity:
	$(if $(SANFLAGS),$(error test-kvm links static guest programs; sanitizers cannot: run it without SANITIZE))

$(KVM_THELP): $(THELP_SRC) | kvm-sanity
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) -Itools -Itests $(ALLCFLAGS) -c -o $@ $<

$(B)/kvm/t_kvm_%: tests/kvm/t_kvm_%.c $(KVM_HARNESS) $(KVM_THELP) $(B)/libpagein-internal.a | kvm-sanity
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  STATIC  $@")
	$(Q)$(CC) $(CPPFLAGS) -Itools -Itests $(ALLCFLAGS) -static -o $@ $< $(KVM_HARNESS) \
		$(KVM_THELP) $(B)/libpagein-internal.a $(LIBS)

# The pagein command for `pagein bench --kvm` inside the guest: the same objects as $(B)/pagein.
$(B)/kvm/pagein: $(CMD_OBJ) $(B)/libpagein.a | kvm-sanity
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  STATIC  $@")
	$(Q)$(CC) $(ALLCFLAGS) -static -o $@ $(CMD_OBJ) $(B)/libpagein.a $(LIBS)

kvm-tests: deps $(KVM_TESTS) $(B)/kvm/pagein

test-kvm: kvm-deps kvm-tests
	$(Q)B=$(B) bash kvm/tier.sh

-include $(KVM_TESTS:=.d) $(KVM_THELP:.o=.d)
