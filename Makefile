# Two commands matter: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := tinyproxy squid dnsmasq-base nftables iproute2 curl util-linux prometheus \
	prometheus-alertmanager prometheus-blackbox-exporter prometheus-node-exporter \
	chromium fuse3 libfuse3-3
PROTO_DIR := proto/preflight/v1

.PHONY: run test venv debian-packages proto lint bench image-context clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/preflight demo

# Installs the Debian packages the real-process tests use, when root and missing.
debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: tests needing $$missing will skip"; fi; \
	fi

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=proto --grpc_python_out=proto \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=proto \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=proto \
	  proto/preflight/v1/report.proto

lint: $(STAMP)
	$(BIN)/ruff check agent collector proto/preflight tests bench deploy
	$(BIN)/ruff format --check agent collector proto/preflight tests bench deploy
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) debian-packages lint
	$(BIN)/pytest -q -ra

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Exactly what deploy/Dockerfile copies (see docs/install.md).
image-context:
	deploy/image-context.sh build/image-context

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
