# SPDX-License-Identifier: MIT
# libFuzzer targets (fuzz/fuzz_*.c), included from the Makefile. `make fuzz` builds them with clang
# (-fsanitize=fuzzer,address,undefined) into build-fuzz/ and runs each for FUZZ_TIME seconds
# (default 60) from its seed corpus fuzz/corpus/<target>/ (new inputs go to build-fuzz/corpus/);
# `make fuzz-smoke` runs each for 3 s (what make test runs when clang is there).

FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FB         := build-fuzz
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wno-unused-parameter $(FUZZ_SAN) -pthread
FUZZ_SRC   := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN   := $(FUZZ_SRC:fuzz/%.c=$(FB)/%)
FUZZ_LIBO  := $(LIB_SRC:%.c=$(FB)/%.o)

.PHONY: fuzz fuzz-build fuzz-smoke

$(FB)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FB)/libpagein.a: $(FUZZ_LIBO)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FB)/fuzz_%: fuzz/fuzz_%.c $(FB)/libpagein.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FB)/libpagein.a $(LIBS)

fuzz-build:
	$(Q)bash scripts/deps.sh fuzz
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	$(Q)FB=$(FB) FUZZ_TIME=$(FUZZ_TIME) bash fuzz/run.sh

fuzz-smoke: fuzz-build
	$(Q)FB=$(FB) FUZZ_TIME=3 bash fuzz/run.sh

-include $(FUZZ_LIBO:.o=.d)
