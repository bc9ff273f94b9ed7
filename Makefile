# Two entry points for a fresh Debian 12 machine (run as root, or with sudo available):
#   make demo   set everything up, then run the shock-tracking example on 2 MPI ranks
#               (make demo EXAMPLE=ti: the Ti alpha -> omega ramp)
#   make test   set everything up, then run the test suite
# Both are idempotent: a second run skips what is already installed.

VENV        ?= .venv
PY          := $(VENV)/bin/python
NP          ?= 2
# the example `make demo` runs: shock (Fe, BCC -> HCP) or ti (Ti alpha -> omega ramp)
EXAMPLE     ?= shock
# torch: the CPU build by default; set TORCH_SPEC to a CUDA build on a GPU machine.
TORCH_SPEC  ?= torch==2.13.0
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := lammps python3-lammps liblammps-dev python3-mpi4py python3-venv openmpi-bin
PYTEST_ARGS ?=

.PHONY: setup system venv demo test bench doctor clean-venv

setup: system venv

system:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	    echo "Debian packages present: $(APT_PACKAGES)"; \
	else \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

# The venv is made from Debian's /usr/bin/python3 because that is the interpreter
# Debian's LAMMPS embeds; --system-site-packages lets it see Debian's lammps and mpi4py.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

doctor: setup
	$(VENV)/bin/lpfm doctor

demo: setup
	$(VENV)/bin/lpfm demo --np $(NP) --example $(EXAMPLE)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/lpfm bench

clean-venv:
	rm -rf $(VENV)
