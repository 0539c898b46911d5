# SPDX-License-Identifier: MIT
# kvm.mk - the KVM test tier, included by the top Makefile. `make test-kvm` installs what the tier
# needs, fetches the guest kernel, links tests/kvm/t_kvm_*.c statically (the guest has no libc)
# and boots them under QEMU (kvm/tier.sh). `make kvm-tests` only builds the static programs.

KVM_TEST_SRC := $(sort $(wildcard tests/kvm/t_kvm_*.c))
KVM_TESTS    := $(KVM_TEST_SRC:tests/kvm/%.c=$(B)/kvm/%)

.PHONY: test-kvm kvm-tests kvm-deps

kvm-deps:
	$(Q)bash scripts/deps.sh kvm

# Sanitizer runtimes do not link -static: the tier is built from the plain build only.
kvm-sanity:
	$(if $(SANFLAGS),$(error test-kvm links static guest programs; sanitizers cannot: run it without SANITIZE))

KVM_HELP_OBJ := $(B)/kvm/harness.o $(B)/kvm/hspace.o

$(B)/kvm/%.o: tests/kvm/%.c tests/kvm/harness.h tests/kvm/hspace.h tests/kvm/kvm_api.h | kvm-sanity
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -Itests/kvm $(ALLCFLAGS) -c -o $@ $<

$(B)/kvm/t_kvm_%: tests/kvm/t_kvm_%.c $(KVM_HELP_OBJ) $(B)/libpagein.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  STATIC  $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests/kvm $(ALLCFLAGS) -static -o $@ $< $(KVM_HELP_OBJ) \
		$(B)/libpagein.a $(LIBS)

# helpers are intermediates of the pattern rule: keep them so a rerun links without recompiling
.SECONDARY: $(KVM_HELP_OBJ)

kvm-tests: deps $(KVM_TESTS)

test-kvm: kvm-deps kvm-tests
	$(Q)B=$(B) bash kvm/tier.sh

.PHONY: kvm-sanity
