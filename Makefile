# SPDX-License-Identifier: MIT
# pagein: one entry point. make | make test | make demo | make bench | make install
# Sources are picked up by wildcard: lib/*.c lib/net/*.c -> libpagein, tools/*.c bench/*.c -> the
# pagein command, tests/t_*.c -> one test program each, examples/*.c -> one program each.
# WERROR=0 relaxes -Werror, V=1 prints commands, SANITIZE=address,undefined builds everything with
# those sanitizers (into build-san-*/), PREFIX and DESTDIR place `make install`.

CC      ?= cc
LD      ?= ld
OBJCOPY ?= objcopy
WERROR  ?= 1
PREFIX  ?= /usr/local
SANITIZE ?=

# The version lives in one place, the VERSION file: every compile sees it as PAGEIN_VERSION_STR
# and the .pc file's Version: line is made from it.
VERSION := $(strip $(file < VERSION))

ifeq ($(SANITIZE),)
B := build
SANFLAGS :=
else
comma := ,
B := build-san-$(subst $(comma),-,$(SANITIZE))
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

WFLAGS := -Wall -Wextra -Wshadow -Wno-unused-parameter
ifeq ($(WERROR),1)
WFLAGS += -Werror
endif

CFLAGS  ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Ilib -DPAGEIN_VERSION_STR=\"$(VERSION)\"
ALLCFLAGS = -std=c11 $(WFLAGS) $(CFLAGS) $(SANFLAGS) -pthread -MMD -MP
LIBS := -lxxhash -llz4 -lssl -lcrypto -lpthread -lm

LIB_SRC     := $(sort $(wildcard lib/*.c lib/net/*.c))
PUB_HDR     := $(sort $(wildcard include/pagein*.h))
TOOL_SRC    := $(sort $(wildcard tools/*.c))
BENCH_SRC   := $(sort $(wildcard bench/*.c))
TEST_SRC    := $(sort $(wildcard tests/t_*.c))
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
THELP_SRC   := tests/helpers.c tests/proxy.c
HARNESS_SRC := tests/kvmvm.c

LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
PIC_OBJ   := $(LIB_SRC:%.c=$(B)/pic/%.o)
# The command: its subcommands, the benchmark behind `pagein bench`, and the vCPU harness that
# `pagein bench --kvm` drives (the same object the KVM tests link).
CMD_OBJ   := $(TOOL_SRC:%.c=$(B)/%.o) $(BENCH_SRC:%.c=$(B)/%.o) $(HARNESS_SRC:%.c=$(B)/%.o)
THELP_OBJ := $(THELP_SRC:%.c=$(B)/%.o)
TESTS     := $(TEST_SRC:tests/%.c=$(B)/tests/%)
EXAMPLES  := $(EXAMPLE_SRC:examples/%.c=$(B)/examples/%)
MAN1      := $(wildcard docs/man/*.1)
MAN3      := $(wildcard docs/man/*.3)

# Where the headers of each layer are: bench and the tests use the command's helpers and the
# shared page pattern (tools/), the tests and bench the harness (tests/).
$(B)/bench/%.o $(B)/tests/%.o: CPPFLAGS += -Itools -Itests

all: $(B)/libpagein.a $(B)/libpagein.so $(B)/pagein.pc $(B)/pagein $(TESTS) $(EXAMPLES)

.PHONY: all deps lib test demo bench install clean soak
# Made by pattern rules and needed again by the next build: make must not delete them as
# intermediates (that relinked every test on every make).
.SECONDARY: $(THELP_OBJ) $(CMD_OBJ) $(LIB_OBJ) $(PIC_OBJ)

# Debian packages the build needs, installed once per build folder (or the exact apt-get line is
# printed). Every compile waits for it (order-only): with -j it ran beside the compiles, which
# then failed on a missing lz4.h.
DEPS_STAMP := $(B)/.deps-build
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@mkdir -p $(dir $@)
	$(Q)bash scripts/deps.sh build
	@touch $@

$(B)/%.o: %.c VERSION | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(ALLCFLAGS) -c -o $@ $<

$(B)/pic/%.o: %.c VERSION | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(ALLCFLAGS) -fPIC -c -o $@ $<

# The public API is exactly what the public headers declare: one symbol list made from them
# feeds the shared library's version script and the static archive's symbol filter.
$(B)/pagein.syms: $(PUB_HDR)
	@mkdir -p $(dir $@)
	$(Q)sed -n 's/^[a-z].*[ *]\(pagein_[a-z0-9_]*\)(.*/\1/p' $^ | sort -u > $@

$(B)/pagein.map: $(B)/pagein.syms
	$(Q){ echo "PAGEIN_0 { global:"; sed 's/.*/  &;/' $<; echo "local: *; };"; } > $@

# Everything, internal symbols (pi_*) included: for tests that use fault-injection hooks and
# for the pagein command's static KVM build. Never installed.
$(B)/libpagein-internal.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# The installed archive exposes the public API alone, as the shared library does: all objects
# are linked into one relocatable object whose other global symbols are then made local, so a
# program cannot bind to an internal function (nor collide with one).
$(B)/libpagein.o: $(LIB_OBJ) $(B)/pagein.syms
	@$(if $(Q),echo "  LD -r   $@")
	$(Q)$(LD) -r -o $@.all $(LIB_OBJ)
	$(Q)$(OBJCOPY) --keep-global-symbols=$(B)/pagein.syms $@.all $@
	$(Q)rm -f $@.all

$(B)/libpagein.a: $(B)/libpagein.o
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/libpagein.so: $(PIC_OBJ) $(B)/pagein.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SANFLAGS) -Wl,--version-script=$(B)/pagein.map -Wl,-soname,libpagein.so.0 \
		-o $@ $(PIC_OBJ) $(LIBS)

# The .pc names PREFIX, so it is remade when PREFIX changes: $(B)/.prefix holds the PREFIX of
# the last make and is rewritten (at parse time) only when it differs.
PREFIX_STAMP := $(B)/.prefix
$(shell mkdir -p $(B) && { [ "$$(cat $(PREFIX_STAMP) 2>/dev/null)" = '$(PREFIX)' ] || \
	printf '%s\n' '$(PREFIX)' > $(PREFIX_STAMP); })

$(B)/pagein.pc: $(PREFIX_STAMP) VERSION Makefile
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: pagein' 'Description: demand paging of VM and process memory' \
	  'Version: $(VERSION)' 'Requires.private: libxxhash liblz4 libssl libcrypto' \
	  'Libs: -L$${libdir} -lpagein' 'Libs.private: -lpthread -lm' \
	  'Cflags: -I$${includedir}' > $@

# The command links the public archive: it uses the public API alone.
$(B)/pagein: $(CMD_OBJ) $(B)/libpagein.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALLCFLAGS) -o $@ $(CMD_OBJ) $(B)/libpagein.a $(LIBS)

$(B)/tests/%: tests/%.c $(THELP_OBJ) $(B)/libpagein-internal.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) -Itools -Itests $(ALLCFLAGS) -o $@ $< $(THELP_OBJ) \
		$(B)/libpagein-internal.a $(LIBS)

# Examples are what a user writes: the public header and archive only.
$(B)/examples/%: examples/%.c $(B)/libpagein.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  EXAMPLE $@")
	$(Q)$(CC) $(CPPFLAGS) $(ALLCFLAGS) -o $@ $< $(B)/libpagein.a $(LIBS)

lib: $(B)/libpagein.a $(B)/libpagein.so $(B)/pagein.pc

test: all
	$(Q)B=$(B) SANITIZE_BUILD=$(SANITIZE) bash tests/run.sh

demo: $(B)/pagein
	$(Q)$(B)/pagein demo

bench: $(B)/pagein
	$(Q)bash scripts/deps.sh bench
	$(Q)B=$(B) bash bench/run.sh

# issue 11's QEMU 10 post-copy comparison alone (bench/qemu.sh; fetches QEMU 10 into .cache)
.PHONY: bench-qemu
bench-qemu: $(B)/pagein
	$(Q)B=$(B) bash bench/qemu.sh

soak: all
	$(Q)B=$(B) SOAK=1 bash tests/run.sh

install: lib $(B)/pagein
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(PUB_HDR) $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/libpagein.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libpagein.so $(DESTDIR)$(PREFIX)/lib/libpagein.so.0
	ln -sf libpagein.so.0 $(DESTDIR)$(PREFIX)/lib/libpagein.so
	install -m 644 $(B)/pagein.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(B)/pagein $(DESTDIR)$(PREFIX)/bin/
ifneq ($(MAN1),)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1/
endif
ifneq ($(MAN3),)
	install -d $(DESTDIR)$(PREFIX)/share/man/man3
	install -m 644 $(MAN3) $(DESTDIR)$(PREFIX)/share/man/man3/
endif

clean:
	rm -rf build build-san-*

-include kvm/kvm.mk
-include $(LIB_OBJ:.o=.d) $(PIC_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(THELP_OBJ:.o=.d) $(TESTS:=.d) \
	$(EXAMPLES:=.d)
-include fuzz/fuzz.mk
