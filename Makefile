# hashrec — two commands: `make all` (the study) and `make test`.
# Every target is a file with real dependencies: touching a notebook reruns it
# and what depends on it; training runs resume from their checkpoints.

PROFILE ?= default
# `PROFILE=full make all REUSE_COMMITTED=1`: notebook 07 reads a run with no folder here from the
# committed results/full/comparison_* (compare --reuse-committed), so a fresh clone trains only what changed;
# `make tune REUSE_COMMITTED=1` reads the grid's recorded points from results/<profile>/tuning.csv the same way.
REUSE_COMMITTED ?=
# `make all DATASET=path/to/folder`: the one-command study of a dataset of your own (see README).
DATASET ?=
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
RUNS    := runs/$(PROFILE)
SRC     := $(wildcard hashrec_utils/*.py hashrec_utils/*/*.py) pyproject.toml
PAPERMILL := $(PY) -m papermill --cwd notebooks --log-output --no-progress-bar
REPORT  := $(if $(filter default,$(PROFILE)),report/report.pdf,report/report-$(PROFILE).pdf)

.PHONY: install data all notebooks report tune test test-unit test-notebooks bench clean help
.DELETE_ON_ERROR:

help:
	@echo "make all     run notebooks 01-05 and 07 with papermill (PROFILE=$(PROFILE)) and build $(REPORT)"
	@echo "make all PROFILE=full REUSE_COMMITTED=1   notebook 07 reads runs absent here from the committed results/full/"
	@echo "make all DATASET=FOLDER   the one-command study of your own dataset (results/<name>/, report/study-<name>.pdf)"
	@echo "make test    unit tests + nbval over every notebook in the quick profile"
	@echo "make install create .venv and install hashrec with its dev extras"
	@echo "make data    fetch / check the datasets of the profile"
	@echo "make report  build the Typst report from results/$(PROFILE)/"
	@echo "make bench   run the speed benchmarks (ratios against peers)"
	@echo "make tune    the hashing table's validation grid (once, outside make all): results/$(PROFILE)/tuning.*, winners in hashrec_utils/experiments/tuned.json"

# ---- set-up ------------------------------------------------------------------
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

data: $(STAMP)
	$(PY) -m hashrec_utils data ml-1m
	$(if $(filter full,$(PROFILE)),$(PY) -m hashrec_utils data gowalla)

# ---- the study ----------------------------------------------------------------
NB01 := $(RUNS)/01_data_prep.ipynb
NB02 := $(RUNS)/02_lightgcn_baseline.ipynb
NB03 := $(RUNS)/03_hashing.ipynb
NB04 := $(RUNS)/04_faiss_baselines.ipynb
NB05 := $(RUNS)/05_tradeoff.ipynb
# 07: the seed paper's table on Gowalla (trained in `full`; `default` shows full's committed results)
NB07 := $(RUNS)/07_published_comparison.ipynb
EXECUTED := $(foreach n,$(NB01) $(NB02) $(NB03) $(NB04) $(NB05) $(NB07),$(if $(wildcard notebooks/$(notdir $(n))),$(n)))

$(NB07): NB_PARAMS = $(if $(REUSE_COMMITTED),-p reuse_committed True)

# What each notebook reads from the ones before it.
$(NB03): $(NB02)
$(NB04): $(NB02) $(NB03)
$(NB05): $(NB03) $(NB04)

# The default profile's executed notebooks (outputs included) are committed under
# notebooks/executed/, so a reader sees the results without running anything.
$(RUNS)/%.ipynb: notebooks/%.ipynb $(SRC) $(STAMP)
	@mkdir -p $(RUNS)
	$(PAPERMILL) $< $@.partial.ipynb -p profile $(PROFILE) $(NB_PARAMS)
	@mv $@.partial.ipynb $@
	$(if $(filter default,$(PROFILE)),@mkdir -p notebooks/executed && cp $@ notebooks/executed/$(notdir $@))

notebooks: $(EXECUTED)

$(REPORT): report/report.typ $(EXECUTED) $(STAMP)
	$(PY) -m hashrec_utils report --profile $(PROFILE) --output $@

report: $(STAMP)
	$(PY) -m hashrec_utils report --profile $(PROFILE) --output $(REPORT)

# The wall-clock printed at the end counts everything `make all` did, installation included.
all:
	@start=$$(date +%s); \
	if [ -n "$(DATASET)" ]; then \
	  $(MAKE) --no-print-directory install && $(PY) -m hashrec_utils study --dataset "$(DATASET)" --profile $(PROFILE) || exit $$?; \
	else \
	  $(MAKE) --no-print-directory install notebooks $(REPORT) PROFILE=$(PROFILE) || exit $$?; \
	fi; \
	s=$$(( $$(date +%s) - start )); \
	echo "make all (PROFILE=$(PROFILE)): $$s s wall-clock ($$(( s / 60 )) min $$(( s % 60 )) s)"

# The equal tuning budget: every table row's validation grid (lr x schedule length, then its own
# schedule). Run once, outside `make all`; its results and winners are committed, and make all's
# runs read the winners (a winner's run folder is the tuning run, so it is reused).
tune: $(STAMP)
	@start=$$(date +%s); $(PY) -m hashrec_utils tune --profile $(PROFILE) $(if $(REUSE_COMMITTED),--reuse-committed) || exit $$?; \
	echo "make tune (PROFILE=$(PROFILE)): $$(( $$(date +%s) - start )) s wall-clock"

# ---- checks -------------------------------------------------------------------
test: test-unit test-notebooks

test-unit: $(STAMP)
	$(PY) -m pytest tests

test-notebooks: $(STAMP)
	HASHREC_PROFILE=quick $(PY) -m pytest --nbval-lax -p no:cacheprovider notebooks/*.ipynb
	$(PY) -m hashrec_utils report --profile quick

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit $$?; done

clean:
	rm -rf runs/quick report/report-quick.pdf results/quick figures/quick .pytest_cache
