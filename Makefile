# Two commands on a fresh Debian machine: `make run` and `make test`.
# Both create .venv in the repo root when missing and install everything the project needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# timm (a test dependency) imports torchvision, whose build must match torch exactly.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: run test bench clean system-deps

$(VENV)/.installed: pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]' $(TORCH_PINS)
	touch $@

# Qt's xcb platform plugin needs a few X libraries that a minimal Debian lacks; poppler-utils gives the
# tests pdftoppm / pdftotext, an independent reader of exported PDFs; fonts-dejavu-core the font exported
# figures are drawn in. Only root can add them.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 \
	      libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 \
	      libxcb-xinerama0 libxcb-randr0 libxcb-xfixes0 libxcb-xkb1 libglib2.0-0 poppler-utils fonts-dejavu-core; do \
	      dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages for Qt and the tests: $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install $$missing; the GUI may not start"; \
	  fi; \
	fi

run: $(VENV)/.installed
	$(VENV)/bin/attnviz

test: $(VENV)/.installed
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
