# Build, test and run the load balancer. Plain GNU make; `make V=1` shows commands.
#
#   make          bin/lb, bin/lb-backend, bin/lb-load
#   make run      the demo: config/lb.conf in front of three local backends
#   make test     unit tests, fuzz seed replay, black-box tests, a network fuzz pass
#                 (ASan+UBSan build)
#   make asan     the same suite against a sanitizer build only
#   make fuzz     libFuzzer runs of the parser and config loader, then the network
#                 fuzzer against the ASan+UBSan lb (FUZZ_SECONDS each)
#   make bench    side by side with HAProxy and nginx
#   make install  binary, config, systemd unit, man page, logrotate (PREFIX, DESTDIR)
#   make image    OCI image of a static lb with podman (IMAGE=name:tag)

CC       ?= cc
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Wshadow -Werror
CPPFLAGS += -D_GNU_SOURCE -I.
LDLIBS   := -lev -lconfig -lcares -lssl -lcrypto -lpthread -lm
SAN      :=

BUILD    ?= build/rel
BIN      ?= bin
PREFIX   ?= /usr/local
FUZZ_SECONDS ?= 60

ifeq ($(V),1)
Q :=
else
Q := @
endif

ALL_CFLAGS = -std=c11 $(WARN) $(CFLAGS) $(SAN) -MMD -MP

# Everything but the programs' main files goes into one archive that the
# programs, unit tests and fuzz drivers link against.
LIB_SRC   := $(wildcard config/*.c) $(wildcard lb/core/*.c) $(wildcard health/*.c) \
             $(filter-out lb/main.c,$(wildcard lb/*.c)) $(wildcard lb/*.S) \
             $(wildcard loadtest/common/*.c)
LB_SRC    := lb/main.c
BACK_SRC  := $(wildcard loadtest/backend/*.c)
LOAD_SRC  := $(wildcard loadtest/load/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.S,$(BUILD)/%.o,$(patsubst %.c,$(BUILD)/%.o,$(1)))

LIB       := $(BUILD)/liblb.a
PROGS     := $(BIN)/lb $(if $(BACK_SRC),$(BIN)/lb-backend) $(if $(LOAD_SRC),$(BIN)/lb-load)
UNITS     := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
REPLAYS   := $(patsubst tests/fuzz/fuzz_%.c,$(BUILD)/tests/replay_%,$(FUZZ_SRC))

.PHONY: all deps deps-test deps-bench deps-scenarios deps-image test asan unit fuzz bench run install clean \
        scenarios format image static
.DEFAULT_GOAL := all

all: $(PROGS)

# Objects depend on the exact flags they were built with: changing CC, OPT or
# SAN for a build directory rebuilds it instead of mixing objects.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(CPPFLAGS) $(ALL_CFLAGS)
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = "$(FLAGS_NOW)" ] || echo "$(FLAGS_NOW)" > $(FLAGS_STAMP); })

# keep objects of test and replay binaries between runs
.SECONDARY:

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

# Files a .S embeds with .incbin (its dependency file names only what it
# #includes). The path in .incbin is relative to the top of the tree.
$(BUILD)/%.o: %.S $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $<")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/lb/stats_page.o: lb/stats_page.html

# `lb -V` reports the flags the binary was built with
$(BUILD)/lb/version.o: CPPFLAGS += -DLB_BUILD_FLAGS='"$(strip $(CFLAGS) $(SAN))"'

$(LIB): $(call obj,$(LIB_SRC))
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN)/lb: $(call obj,$(LB_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/lb-backend: $(call obj,$(BACK_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/lb-load: $(call obj,$(LOAD_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# Seed replay: the fuzz driver linked with a plain main() that feeds it files.
$(BUILD)/tests/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNITS) $(REPLAYS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- dependencies -----------------------------------------------------------
# Debian packages each target needs; installed when missing (as root), or the
# exact command is printed.
PKGS_BUILD := gcc make pkg-config libev-dev libconfig-dev libc-ares-dev libssl-dev libcmocka-dev
# chromium: the stats page tests drive it headless. prometheus: its promtool
# checks /metrics, systemd/prometheus-alerts.yml and the dashboard's queries.
PKGS_TEST  := $(PKGS_BUILD) python3 curl openssl clang libclang-rt-14-dev systemd procps \
              chromium prometheus python3-yaml python3-kubernetes groff-base man-db logrotate
PKGS_BENCH := $(PKGS_BUILD) haproxy nginx-light wrk python3 openssl
PKGS_SCENARIOS := $(PKGS_BUILD) python3 openssl testssl.sh
PKGS_IMAGE := $(PKGS_BUILD) podman ca-certificates

define ensure_pkgs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null \
	      || { echo "apt-get install failed:$$missing"; exit 1; }; \
	  else \
	    echo "missing packages; run:  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call ensure_pkgs,$(PKGS_BUILD))

deps-test:
	$(call ensure_pkgs,$(PKGS_TEST))

deps-bench:
	$(call ensure_pkgs,$(PKGS_BENCH))

deps-scenarios:
	$(call ensure_pkgs,$(PKGS_SCENARIOS))

deps-image:
	$(call ensure_pkgs,$(PKGS_IMAGE))

# --- the two commands -------------------------------------------------------
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)exec loadtest/demo.sh

test: deps-test
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    OPT=-O1 all unit
	$(Q)tests/run.sh

asan: deps-test
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    OPT=-O1 all unit
	$(Q)TEST_ONLY=asan tests/run.sh

fuzz: deps-test
	$(Q)$(MAKE) --no-print-directory BUILD=build/fuzz BIN=build/fuzz/bin CC=clang OPT=-O1 \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
	    $(patsubst tests/fuzz/fuzz_%.c,build/fuzz/fuzz_%,$(FUZZ_SRC))
	$(Q)for f in $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC)); do \
	  mkdir -p build/fuzz/corpus-$$f; \
	  echo "fuzzing $$f for $(FUZZ_SECONDS)s"; \
	  build/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -dict=tests/fuzz/$$f.dict \
	    -artifact_prefix=build/fuzz/ -detect_leaks=0 build/fuzz/corpus-$$f tests/fuzz/seeds/$$f 2>&1 | tail -3 \
	    || exit 1; \
	done
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    OPT=-O1 all
	$(Q)python3 tests/netfuzz/netfuzz.py --lb build/asan/bin/lb --seconds $(FUZZ_SECONDS)

build/fuzz/fuzz_%: build/fuzz/tests/fuzz/fuzz_%.o build/fuzz/liblb.a
	$(Q)clang -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

bench: deps-bench
	$(Q)$(MAKE) --no-print-directory all
	$(Q)loadtest/bench.sh

scenarios: deps-scenarios
	$(Q)$(MAKE) --no-print-directory all
	$(Q)loadtest/scenarios/run-all.sh

# The unit names /usr/local/bin/lb (the default PREFIX) so that the file in
# the tree verifies as it is; the installed copy names $(PREFIX)/bin/lb. An
# existing /etc/lb/lb.conf is the operator's and is never overwritten; a new
# one is the demo with a random admin token in place of the demo's, mode 0640
# (it holds that token), group lb when that group exists. Installing to the
# machine itself (no DESTDIR) as root also creates the lb user first.
MANDIR    ?= $(PREFIX)/share/man
CONF_DEST := $(DESTDIR)/etc/lb/lb.conf
install: all
	install -D -m 0755 $(BIN)/lb $(DESTDIR)$(PREFIX)/bin/lb
	sed 's|/usr/local/bin/lb|$(PREFIX)/bin/lb|g' systemd/lb.service > $(BUILD)/lb.service
	install -D -m 0644 $(BUILD)/lb.service $(DESTDIR)/lib/systemd/system/lb.service
	install -D -m 0644 systemd/lb.sysusers $(DESTDIR)/usr/lib/sysusers.d/lb.conf
	install -D -m 0644 deploy/lb.8 $(DESTDIR)$(MANDIR)/man8/lb.8
	install -D -m 0644 deploy/lb.logrotate $(DESTDIR)/etc/logrotate.d/lb
	$(Q)if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && ! getent group lb >/dev/null && \
	    command -v systemd-sysusers >/dev/null; then \
	  echo "systemd-sysusers /usr/lib/sysusers.d/lb.conf"; systemd-sysusers /usr/lib/sysusers.d/lb.conf; \
	fi
	$(Q)if [ -e $(CONF_DEST) ]; then \
	  echo "$(CONF_DEST) exists: kept as it is"; \
	else \
	  token=$$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n'); \
	  [ $${#token} -eq 32 ] || { echo "no random token"; exit 1; }; \
	  sed "s/token = \"demo-token\";/token = \"$$token\";/" config/lb.conf > $(BUILD)/lb.conf.install; \
	  grep -q "token = \"$$token\";" $(BUILD)/lb.conf.install || { echo "config/lb.conf has no demo token to replace"; exit 1; }; \
	  install -D -m 0640 $(BUILD)/lb.conf.install $(CONF_DEST); \
	  rm -f $(BUILD)/lb.conf.install; \
	  if [ -z "$(DESTDIR)" ] && getent group lb >/dev/null; then chgrp lb $(CONF_DEST); fi; \
	  echo "installed $(CONF_DEST) (mode 0640) with a new random admin.token"; \
	fi

# --- the container image ----------------------------------------------------
# A static lb: the release objects linked with -static against the static
# archives of libev, libconfig and OpenSSL that Debian's -dev packages ship.
# glibc warns that getpwnam, getaddrinfo, gethostbyname and dlopen would need
# its shared libraries at run time: lb calls getaddrinfo only with
# AI_NUMERICHOST (no NSS), OpenSSL's gethostbyname and dlopen (engines) are
# never reached, and getpwnam serves lb.user alone, which the image does not
# use (it starts as its user). Those warnings are dropped; any other linker
# output is shown.
VERSION := $(shell sed -n 's/^\#define LB_VERSION "\(.*\)"/\1/p' lb/lb.h)
IMAGE   ?= localhost/lb:$(VERSION)
STATIC  := $(BUILD)/static/lb

static: $(STATIC)

$(STATIC): $(call obj,$(LB_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@ (static)")
	$(Q)$(CC) -std=c11 $(WARN) $(CFLAGS) -static -o $@ $^ $(LDLIBS) 2>$@.ld || { cat $@.ld; exit 1; }
	$(Q)awk '/: in function /{held=$$0; next} /requires at runtime the shared libraries/{held=""; next} \
	    {if (held != "") print held; held=""; print} END{if (held != "") print held}' $@.ld >&2
	$(Q)rm -f $@.ld

# FROM scratch: what lb needs and nothing else (deploy/Containerfile says
# what). Needs podman (make deps-image installs it); running the image needs
# a host whose runtime works, building it does not.
image: deps-image $(STATIC)
	$(Q)rm -rf $(BUILD)/image && mkdir -p $(BUILD)/image
	$(Q)strip -o $(BUILD)/image/lb $(STATIC)
	$(Q)cp /etc/ssl/certs/ca-certificates.crt $(BUILD)/image/
	$(Q)printf 'lb:x:65532:65532:lb:/nonexistent:/sbin/nologin\n' > $(BUILD)/image/passwd
	$(Q)printf 'lb:x:65532:\n' > $(BUILD)/image/group
	$(Q)podman build --quiet -f deploy/Containerfile -t $(IMAGE) \
	    --label org.opencontainers.image.version=$(VERSION) $(BUILD)/image
	$(Q)echo "built $(IMAGE): $$(podman image inspect --format '{{.Size}}' $(IMAGE)) bytes"

format:
	clang-format -i $(wildcard */*.c */*.h */*/*.c */*/*.h)

clean:
	rm -rf build bin
