# attn — top-level entry points. Everything is re-runnable; CMake does the real work.
#
#   make deps     install the Debian packages (scripts/install-deps.sh; no-op when all are present)
#   make build    Release build in build/
#   make test     deps, Python venv (the bench test BenchPeers needs torch); Release build + ctest;
#                 ASan+UBSan build in build-asan/ + ctest; clang libFuzzer build in build-fuzz/, each
#                 fuzz target run a few seconds from its seeds (ctest fuzz.*, tests/fuzz/CMakeLists.txt);
#                 install to build/install and build + run tests/consumer against it
#   make demo     deps, build the CLI, prepare the Bible corpus, train/resume the translator, report BLEU
#   make demo-fashion   the Fashion-MNIST CNN job
#   make bench    deps, Python venv outside the tree (scripts/setup-venv.sh), build, python bench/run.py $(ARGS)
#   make clean    remove build/ and build-asan/
#
# Knobs: JOBS (default nproc), BUILD_DIR, ASAN_DIR, ATTN_VENV (default ~/.cache/attn/venv), ARGS, CMAKE_ARGS,
#        CTEST_ARGS (e.g. CTEST_ARGS="-R Metrics" or "-E TranslationTrain").

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

JOBS       ?= $(shell nproc)
BUILD_DIR  ?= build
ASAN_DIR   ?= build-asan
FUZZ_DIR   ?= build-fuzz
INSTALL_DIR = $(abspath $(BUILD_DIR))/install
CONSUMER_DIR = $(BUILD_DIR)/consumer
ATTN_VENV  ?= $(HOME)/.cache/attn/venv
VENV_PYTHON = $(ATTN_VENV)/bin/python
CMAKE_ARGS ?=
CTEST_ARGS ?=
ARGS       ?=

# Tests: two OpenMP threads each, two tests at a time (the reference machine has 2 cores).
export OMP_NUM_THREADS = 2
CTEST = ctest --output-on-failure --no-tests=error -j2 $(CTEST_ARGS)
ASAN_ENV = LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp) \
           ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1:strict_string_checks=1:detect_stack_use_after_return=1 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps configure build test test-release test-asan test-fuzz test-install demo demo-build demo-fashion bench venv clean data-austen data-fortunes
# Targets run in the order written (deps before build) even under make -j; CMake parallelises inside.
.NOTPARALLEL:

all: build

deps:
	bash scripts/install-deps.sh

# Configuring an existing build dir again is quick and picks up CMAKE_ARGS.
configure:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DATTN_VENV=$(ATTN_VENV) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps venv
	$(MAKE) --no-print-directory test-release
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-fuzz
	$(MAKE) --no-print-directory test-install

test-release: build
	cd $(BUILD_DIR) && $(CTEST)

# -O1 keeps ASan fast enough; benchmarks are skipped (meaningless under sanitizers).
test-asan:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DATTN_SANITIZE=ON -DATTN_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && $(ASAN_ENV) $(CTEST) --timeout 3600

# The libFuzzer targets (tests/fuzz; clang only), each run briefly from its seed corpus: no finding.
# Only the library and the fuzz targets are built, at -O1 like the ASan build.
test-fuzz:
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DATTN_BUILD_FUZZ=ON -DATTN_BUILD_TESTS=OFF \
	  -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_TOOLS=OFF $(CMAKE_ARGS)
	cmake --build $(FUZZ_DIR) -j $(JOBS)
	cd $(FUZZ_DIR) && $(CTEST) -R '^fuzz\.'

# The installed package must work for an out-of-tree project: find_package(attn) + attn::attn.
test-install: build
	rm -rf $(INSTALL_DIR) $(CONSUMER_DIR)
	cmake --install $(BUILD_DIR) --prefix $(INSTALL_DIR)
	cmake -S tests/consumer -B $(CONSUMER_DIR) -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_PREFIX_PATH=$(INSTALL_DIR)
	cmake --build $(CONSUMER_DIR) -j $(JOBS)
	$(CONSUMER_DIR)/attn_consumer

# The main job (docs/translation.md): prepare the English->Spanish Bible corpus from Debian's SWORD
# packages (once), train the Transformer translator within a time budget (or resume and improve the
# run in $(DEMO_OUT)), then print held-out BLEU, a few translations and where the attention pictures
# are. The last stdout line is JSON with bleu, steps and checkpoint. Only the CLI is built.
DEMO_OUT ?= runs/translate
demo: deps demo-build data/bible/train.en
	./$(BUILD_DIR)/tools/attn/attn demo-translate --out $(DEMO_OUT) $(ARGS)

demo-build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target attn_cli

data/bible/train.en:
	python3 scripts/prepare_bible.py --out data/bible

# The Austen character corpus (train-lm) and the fortunes topic corpus (train-text).
data-austen:
	python3 scripts/prepare_austen.py --out data/austen

data-fortunes:
	python3 scripts/prepare_fortunes.py --out data/fortunes

# The first job: the Fashion-MNIST CNN with its default recipe (last stdout line: JSON with test_accuracy).
demo-fashion: deps demo-build
	./$(BUILD_DIR)/tools/attn/attn demo $(ARGS)

venv:
	bash scripts/setup-venv.sh $(ATTN_VENV)

bench: deps venv build
	ATTN_BUILD_DIR=$(abspath $(BUILD_DIR)) $(VENV_PYTHON) bench/run.py $(ARGS)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
