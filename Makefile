# Patrol Gateway: the commands a developer types and CI runs (.ci/run calls `make test`).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
# Only folders that exist: git does not keep an empty one, and ruff fails on a missing path.
SRC    := $(wildcard gateway devices tests dashboards)
APT_PACKAGES := mosquitto mosquitto-clients socat
# The page's browser test: Debian's Chromium driven by Playwright (never `playwright install`:
# its own browser download cannot be fetched here), and CJK fonts so screenshots show Chinese.
BROWSER_PACKAGES := chromium fonts-noto-cjk
# The weekly pack as PDF embeds Debian's Noto CJK font; its test turns pages into images and
# text with poppler's pdftoppm and pdftotext.
REPORT_PACKAGES := fonts-noto-cjk poppler-utils
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

.PHONY: help venv setup run mosquitto influxdb browser reports lint test bench fmt clean distclean

help:
	@echo "make run        运行演示（内置 broker）/ run the demo (embedded broker)"
	@echo "make test       安装、检查并运行全部测试（CI 即运行此项）/ setup, lint, all tests (what CI runs)"
	@echo "make lint       ruff + mypy"
	@echo "make fmt        格式化并自动修复 / format and auto-fix"
	@echo "make bench      性能测试 / benchmarks"
	@echo "make mosquitto  安装 Mosquitto（测试需要）/ install Mosquitto (the tests need it)"
	@echo "make influxdb   安装 InfluxDB 1.6（测试需要）/ install InfluxDB 1.6 (the tests need it)"
	@echo "make browser    安装 Chromium（网页测试需要）/ install Chromium (the page's test needs it)"
	@echo "make reports    安装中文字体与 poppler（周报 PDF 需要）/ CJK font and poppler (the PDF pack)"
	@echo "make clean      删除缓存与构建产物 / remove caches and build output (distclean: also .venv)"

venv setup: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "需要 Python 3.11 或更高版本：$(PYTHON) 版本过低。" >&2; \
	  echo "Python 3.11 or newer is required; $(PYTHON) is older." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last successful install.
# `dev` holds the tools and every extra the tests use (demo, devices): see pyproject.toml.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(DEMO_STAMP)

# The demo needs the gateway, its embedded broker (`demo`), the page (`api`) and the PDF pack
# (`reports`).
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo,api,reports]'
	@touch $@

run: $(DEMO_STAMP)
	$(BIN)/patrol-gateway demo

# $(call need,CHECK,PACKAGES,WHAT): nothing when the shell test CHECK passes; otherwise install
# Debian's PACKAGES (as root) or say which command to run.
define need
@export PATH="$$PATH:/usr/sbin:/sbin"; \
if $(1); then exit 0; fi; \
if [ "$$(id -u)" -eq 0 ]; then \
  echo "正在安装 / installing: $(2)"; \
  export DEBIAN_FRONTEND=noninteractive; \
  apt-get update -q; \
  apt-get install -y -q $(2); \
else \
  echo "缺少 $(3)。请运行：sudo apt-get install $(2)" >&2; \
  echo "Missing: $(3). Please run: sudo apt-get install $(2)" >&2; \
  exit 1; \
fi
endef

# The integration tests start their own private broker on a free loopback port; they never use
# the system service that Debian's package may start on port 1883.
mosquitto:
	$(call need,command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null && command -v socat >/dev/null,$(APT_PACKAGES),mosquitto)

# Debian's InfluxDB 1.6.7: the tests start their own `influxd` on a free loopback port with a
# generated config (tests/support/influx.py), never the system service, and put a stand-in for
# 1.8+'s /api/v2/write in front of it.
influxdb:
	$(call need,command -v influxd >/dev/null,influxdb,influxd)

browser:
	$(call need,[ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi 'noto.*cjk',$(BROWSER_PACKAGES),chromium / CJK fonts)

reports:
	$(call need,[ -f $(CJK_FONT) ] && command -v pdftoppm >/dev/null && command -v pdftotext >/dev/null,$(REPORT_PACKAGES),CJK font / poppler)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy

# pytest's exit status 5 ("no tests collected") is left as a failure on purpose.
test: $(STAMP) mosquitto influxdb browser reports lint
	$(BIN)/pytest -q

bench: $(STAMP) mosquitto influxdb
	$(BIN)/python -m tests.bench

fmt: $(STAMP)
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
