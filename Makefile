# A thin front to Meson + ninja that gives the README's commands.
#   make run            install missing packages, build, serve a demo image
#   make check          install missing packages, build, run every test
#   make install PREFIX=/usr/local DESTDIR=
#   make check-valgrind, make bench, make clean

BUILD	?= build
PREFIX	?= /usr/local
MESON_OPTS ?=

.PHONY: all deps build check run install check-valgrind bench clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: deps
	$(MAKE) build
	scripts/run-tests $(BUILD)

# Ctrl-C stops the demo, not make: on a terminal the demo runs as a job
# of its own in the foreground (bash -m), so the SIGINT reaches the demo
# alone, which then ends with status 0 and make with it, quietly.  (make
# itself would die of the SIGINT, and report the recipe.)
run: deps
	$(MAKE) build
	@if [ -t 0 ]; then bash -mc 'scripts/demo "$$1"; exit $$?' sh $(BUILD); \
	else scripts/demo $(BUILD); fi

install: $(BUILD)/build.ninja
	meson configure $(BUILD) -Dprefix=$(PREFIX)
	ninja -C $(BUILD)
	DESTDIR="$(DESTDIR)" meson install -C $(BUILD) --no-rebuild

check-valgrind: deps
	$(MAKE) build
	scripts/run-tests $(BUILD) --suite valgrind \
	    --wrapper 'valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no'

bench: deps
	$(MAKE) build
	bench/run-all $(BUILD)

clean:
	rm -rf $(BUILD)
