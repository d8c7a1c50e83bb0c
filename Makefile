# eifbake: see README.md. Every target works on a fresh Debian machine after
# `scripts/deps.sh` (which `make demo` and `.ci/run` call themselves).
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build test lint fmt demo demo-arm64 bench golden deps

all: build

deps:
	bash scripts/deps.sh

build:
	$(CARGO) build --release --locked

# The whole test suite: unit, integration, golden, cross-checks against
# independent implementations, then lints.
test:
	bash scripts/deps.sh --with-eif-build
	$(CARGO) test --locked --all-targets
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

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

# The benchmark harness (bench/, crate eifbake-bench): bench/RESULTS.md and
# target/bench/results.json. `cargo test -p eifbake-bench` runs its quick mode.
bench: deps build
	$(CARGO) run --release --locked -p eifbake-bench -- run
