# eifbake: see README.md. Every target works on a fresh Debian machine after
# `scripts/deps.sh` (which `make demo` and `.ci/run` call themselves).
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build install test lint fmt demo demo-arm64 demo-apps bench golden deps

all: build

deps:
	bash scripts/deps.sh

build:
	$(CARGO) build --release --locked

# Install the release binary, its shell completions and manual pages under
# $(DESTDIR)$(PREFIX) (default /usr/local): bin/eifbake,
# share/bash-completion/completions/eifbake, share/zsh/site-functions/_eifbake,
# share/fish/vendor_completions.d/eifbake.fish, share/man/man1/eifbake*.1.
PREFIX ?= /usr/local
BIN ?= target/release/eifbake
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/eifbake
	$(BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/eifbake
	$(BIN) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_eifbake
	$(BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/eifbake.fish
	$(BIN) man --dir $(DESTDIR)$(PREFIX)/share/man/man1 > /dev/null

# The whole test suite: the lints first (they fail in a minute, the suite
# takes a quarter of an hour), then unit, integration, golden and
# cross-checks against independent implementations. Installs what the tests
# need (scripts/deps.sh) once, first.
test:
	bash scripts/deps.sh --with-eif-build
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# Recompute the checked-in golden values from real runs (then review the diff).
golden:
	EIFBAKE_REGEN_GOLDEN=1 $(CARGO) test --locked --test cpio golden
	EIFBAKE_REGEN_GOLDEN=1 $(CARGO) test --locked --test eif_golden
	EIFBAKE_REGEN_GOLDEN=1 $(CARGO) test --locked --lib manifest

demo: deps build
	bash scripts/demo.sh

# The same for aarch64 (recipes/hello-arm64): multi-platform fixture images,
# an EIF with the aarch64 flag and an arm64 Image, booted by qemu-system-aarch64.
demo-arm64: deps build
	bash scripts/demo.sh arm64

# A Rust HTTP server with crates.io dependencies (recipes/rust-server), built
# by a Rust toolchain image made from Debian packages, twice, and verified.
demo-apps: deps build
	bash scripts/demo-apps.sh

# The benchmark harness (bench/, crate eifbake-bench): bench/RESULTS.md and
# target/bench/results.json. `cargo test -p eifbake-bench` runs its quick mode.
bench: deps build
	$(CARGO) run --release --locked -p eifbake-bench -- run
