# Hearth. `make` builds everything; `make test` runs every test (as root, all of them).
SHELL := /bin/bash
.DEFAULT_GOAL := build

MODULES  := proto internal services/containerd-lite services/netd services/certd services/guestd cmd/hearthctl examples integration
BIN      := $(CURDIR)/bin
TOOLS    := $(BIN)/tools
BASE     := $(CURDIR)/build/base-rootfs
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X hearth.dev/internal/buildinfo.version=$(VERSION)
GO       ?= go
export GOFLAGS ?= -buildvcs=false

DAEMONS := containerd-lite netd certd

.PHONY: build deps tools proto docs lint test test-unit bench demo base-rootfs examples clean lab lab-down lab-test install uninstall

# Debian packages and the containers' id range; installs what is missing when run as root.
deps:
	@deploy/install-deps.sh

build: $(addprefix $(BIN)/,$(DAEMONS) guestd guestd-init hearth-effect hearthctl) base-rootfs

$(BIN)/containerd-lite $(BIN)/netd $(BIN)/certd: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./services/$(notdir $@)

# guestd runs inside containers built from a busybox-only rootfs: static, no cgo; and
# without gRPC's request tracing (x/net/trace, which links html/template): 2.7 MB less to
# map in every container.
$(BIN)/guestd: FORCE
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -trimpath -ldflags '-s -w $(LDFLAGS)' -o $@ ./services/guestd

# Every container's init, in C (no Go runtime in a process that waits for the container's
# whole life): static, stripped; it runs the guestd next to it. Linked with musl where it is
# installed (deploy/install-deps.sh installs it): 54 KB, where glibc's static libc makes it
# 850 KB, most of which one container alone keeps mapped for its whole life.
INIT_CC ?= $(or $(shell command -v musl-gcc 2>/dev/null),$(CC))
$(BIN)/guestd-init: services/guestd/init/guestd-init.c
	@mkdir -p $(BIN)
	$(INIT_CC) -static -Os -s -Wall -Wextra -Werror -o $@ $<

# The effect client package scripts call, in every subcontainer: static, no gRPC.
$(BIN)/hearth-effect: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $@ ./services/guestd/cmd/hearth-effect

$(BIN)/hearthctl: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/hearthctl

base-rootfs: $(BIN)/guestd $(BIN)/guestd-init $(BIN)/hearth-effect
	deploy/base-rootfs/build.sh $(BASE) $(BIN)/guestd $(BIN)/hearth-effect

FORCE:

# The example packages, signed with build/examples/dev.key: busybox, and hello-pg 1.0.0,
# 2.0.0 and 3.0.0 (its Postgres image is debootstrapped once, as root, and cached).
examples: $(BIN)/hearthctl
	examples/build.sh $(CURDIR)/build/examples

# Pinned code generators and tools, built from tools/go.mod (outside the workspace).
tools:
	cd tools && GOWORK=off $(GO) build -o $(TOOLS)/ \
		github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc \
		github.com/fullstorydev/grpcurl/cmd/grpcurl \
		github.com/letsencrypt/pebble/v2/cmd/pebble \
		github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv

proto: tools
	$(TOOLS)/buf generate

# docs/effects.md, generated from the effect marks and comments of the host API's proto.
EFFECTS_DOC = $(TOOLS)/buf build --as-file-descriptor-set -o $$tmp/api.binpb && \
	$(GO) run ./services/guestd/cmd/effects-doc $$tmp/api.binpb

docs: tools
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; $(EFFECTS_DOC) > $$tmp/effects.md && mv $$tmp/effects.md docs/effects.md

lint: tools
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; $(EFFECTS_DOC) > $$tmp/effects.md && \
	cmp -s $$tmp/effects.md docs/effects.md || { echo "docs/effects.md is stale: run make docs"; exit 1; }
	$(TOOLS)/buf lint
	$(TOOLS)/buf format --diff --exit-code
	$(TOOLS)/buf breaking --against proto/api.binpb
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(addsuffix /...,$(addprefix ./,$(MODULES)))
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	sed "s#out: proto#out: $$tmp#" buf.gen.yaml > $$tmp/buf.gen.yaml; \
	$(TOOLS)/buf generate --template $$tmp/buf.gen.yaml; \
	for f in $$(cd $$tmp && find . -name '*.go'); do \
		cmp -s $$tmp/$$f proto/$$f || { echo "proto/$$f is stale: run make proto"; exit 1; }; \
	done; \
	n1=$$(cd $$tmp && find . -name '*.go' | wc -l); n2=$$(find proto -name '*.pb.go' | wc -l); \
	[ "$$n1" = "$$n2" ] || { echo "generated files differ in number ($$n1 vs $$n2): run make proto"; exit 1; }
	@echo lint ok

# Refresh the committed image that `buf breaking` compares against (after a deliberate change).
proto-lock: tools
	$(TOOLS)/buf build -o proto/api.binpb

# Every test of every module. Root-only tests skip (with the reason) when not root; CI is root.
# Then the parsers that read what packages and the network send are fuzzed briefly (their
# seeds run in every plain go test): FUZZ lists package:target pairs.
FUZZ = ./internal/jsonrpc:FuzzParse \
	./services/netd/internal/proxy:FuzzH1RequestHead \
	./services/netd/internal/proxy:FuzzH1ChunkedBody \
	./internal/manifest:FuzzCheckInput \
	./internal/compose:FuzzConvert
FUZZTIME ?= 8s
test: deps build tools
	PATH="$(TOOLS):$$PATH" HEARTH_BIN_DIR=$(BIN) HEARTH_BASE_ROOTFS=$(BASE) \
		$(GO) test -count=1 -timeout 25m $(addsuffix /...,$(addprefix ./,$(MODULES)))
	@for f in $(FUZZ); do \
		echo "fuzz $${f#*:} ($${f%%:*}) for $(FUZZTIME)"; \
		GO=$(GO) deploy/fuzz.sh $${f%%:*} $${f#*:} $(FUZZTIME) || exit 1; \
	done
	@# As root (CI, after install-deps) the dev lab's test always runs: a lab that cannot
	@# come up fails it. Without root it is skipped, saying why.
	@if [ "$$(id -u)" = 0 ]; then deploy/lab/test.sh; \
	elif why=$$(deploy/lab/lab.sh check 2>&1); then deploy/lab/test.sh; else echo "lab-test skipped: $$why"; fi

test-unit:
	$(GO) test -count=1 -short $(addsuffix /...,$(addprefix ./,$(MODULES)))

bench: deps build tools
	bench/run.sh

demo: deps build
	deploy/demo.sh

# The dev lab (deploy/lab): containerd-lite, netd and certd each in a container of its own,
# with Pebble, challtestsrv and tor, under a dockerd of the lab's own in its own network
# namespace. `make lab` prints how to reach it; `make lab-test` is the lab's own test.
LAB ?= $(CURDIR)/build/lab
lab: deps build tools
	examples/build.sh $(CURDIR)/build/examples busybox >/dev/null
	deploy/lab/lab.sh up $(LAB)

lab-down:
	deploy/lab/lab.sh down $(LAB)

lab-test: deps build tools
	deploy/lab/test.sh

clean:
	rm -rf $(BIN) build

# `make` first (as yourself), then `make install` (as root): the daemons, guestd and
# hearth-effect in $(PREFIX)/lib/hearth, hearthctl in $(PREFIX)/bin, the base rootfs where
# containerd-lite's unit points, the systemd units, the hearth group (sysusers.d) and
# /run/hearth (tmpfiles.d). Both are made at once unless DESTDIR is set (a staging tree:
# then systemd-sysusers and systemd-tmpfiles make them at boot).
# `make uninstall` removes all of it; the daemons' state in /var/lib/hearth stays.
PREFIX   ?= /usr
DESTDIR  ?=
LIBDIR   := $(PREFIX)/lib/hearth
UNITDIR  := $(PREFIX)/lib/systemd/system
UNITS    := hearth.target hearth-certd.service hearth-netd.service hearth-containerd-lite.service
HEARTH_CONF := $(PREFIX)/lib/sysusers.d/hearth.conf $(PREFIX)/lib/tmpfiles.d/hearth.conf
SYSTEMD_UP := [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]

install:
	@for f in $(addprefix $(BIN)/,$(DAEMONS) guestd guestd-init hearth-effect hearthctl) $(BASE)/sbin/guestd-init; do \
		[ -e $$f ] || { echo "install: $$f is missing: run make first"; exit 1; }; done
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d
	install -m 0755 $(addprefix $(BIN)/,$(DAEMONS) guestd guestd-init hearth-effect) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(BIN)/hearthctl $(DESTDIR)$(PREFIX)/bin/
	rm -rf $(DESTDIR)$(LIBDIR)/base-rootfs.new
	cp -a $(BASE) $(DESTDIR)$(LIBDIR)/base-rootfs.new
	rm -rf $(DESTDIR)$(LIBDIR)/base-rootfs && mv $(DESTDIR)$(LIBDIR)/base-rootfs.new $(DESTDIR)$(LIBDIR)/base-rootfs
	for u in $(UNITS); do sed 's#/usr/lib/hearth#$(LIBDIR)#g' deploy/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; done
	install -m 0644 deploy/systemd/hearth.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/hearth.conf
	install -m 0644 deploy/systemd/hearth.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/hearth.conf
	@if [ -z "$(DESTDIR)" ]; then \
		if command -v systemd-sysusers >/dev/null; then systemd-sysusers $(PREFIX)/lib/sysusers.d/hearth.conf; \
		else getent group hearth >/dev/null || groupadd --system hearth; fi; \
		if command -v systemd-tmpfiles >/dev/null; then systemd-tmpfiles --create $(PREFIX)/lib/tmpfiles.d/hearth.conf; \
		else install -d -m 0750 -g hearth /run/hearth; fi; \
	fi
	@if $(SYSTEMD_UP); then systemctl daemon-reload; fi
	@echo "installed; start Hearth now and at boot with: systemctl enable --now hearth.target"

uninstall:
	@if $(SYSTEMD_UP); then systemctl disable --now $(UNITS) || true; fi
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) $(addprefix $(DESTDIR),$(HEARTH_CONF)) $(DESTDIR)$(PREFIX)/bin/hearthctl
	rm -rf $(DESTDIR)$(LIBDIR)
	@if $(SYSTEMD_UP); then systemctl daemon-reload; fi
	@if [ -z "$(DESTDIR)" ]; then \
		rmdir /run/hearth 2>/dev/null || true; \
		! getent group hearth >/dev/null || groupdel hearth; \
	fi
	@echo "uninstalled; the daemons' state in /var/lib/hearth is kept (remove it yourself to forget every package)"
