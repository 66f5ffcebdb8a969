# chimeramix: `make demo` runs the main job, `make test` the tests; both set up .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Experiment variables (see README): DATA is a dataset name or folder.
PRESET ?= paper
DEVICE ?= auto
SEEDS ?= 0-4
MASK ?= seg
DATA ?=
METHODS ?=
JOBS ?= 1
# local (here), slurm (each run a Slurm job; needs submitit: pip install '.[slurm]') or submitit-local
LAUNCHER ?= local
SWEEP_DATASETS ?= cifair10,stl10
SWEEP_SPC ?= 5,10,20
EXTRA ?=
# the CPU protocol's measured table that `make demo` prints after its own run (docs/results.md)
DEMO_RECORDED ?= results/cpu-bf16-cifar10-spc10-confirm.json results/cpu-bf16-cifar10-spc5-confirm.json results/cpu-bf16-cifar10-spc10-envelope.json results/cpu-bf16-cifar10-spc5-envelope.json \
	results/cpu-bf16-cifar10-spc10-gen4000.json

.PHONY: setup test demo bench sweep clean-venv help

help:
	@echo "make demo   - small end-to-end demo on the embedded digits (no download, CPU, < 10 min)"
	@echo "make test   - the test suite"
	@echo "make <dataset>-spc<N> - ChimeraMix vs baseline over seeds $(SEEDS), e.g. make cifair10-spc5 DATA=../shared/data/cifar10"
	@echo "make compare-<dataset>-spc<N> - every comparison method over seeds $(SEEDS)"
	@echo "make sweep  - the grid $(SWEEP_DATASETS) x spc $(SWEEP_SPC) x seeds $(SEEDS) in one command (LAUNCHER=slurm on a cluster)"
	@echo "make bench  - speed benchmark on this machine's device"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check chimeramix cli tests benchmarks scripts
	$(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/chimeramix experiment --data digits --spc 2 --seeds 0-4 --preset fast --mask seg --methods none,mixup,chimeramix \
		--gen-steps 600 --clf-steps 600 --checkpoints checkpoints/demo --jobs 2 \
		--device $(DEVICE) --out-prefix checkpoints/demo/results $(EXTRA)
	@echo ""
	@echo "Expected (docs/results.md): at 2 digits per class ChimeraMix+Seg and MixUp well above the baseline, within noise of each"
	@echo "other (measured: +15.2 and +11.6 on these seeds 0-4, +17.0 and +16.4 on seeds 3-7)."
	@echo "What the CPU protocol measured on a CIFAR-10 copy (recorded, not rerun here):"
	@$(BIN)/chimeramix report $(DEMO_RECORDED) --title "Recorded: CIFAR-10 copy, preset cpu, 5 seeds, bf16 (docs/results.md)"
	@echo "To measure it yourself (57 min measured at spc 5 on 2 idle cores; spc 10 runs the same steps):"
	@echo "    make cifair10-spc10 PRESET=cpu DATA=../shared/data/cifar10 METHODS=none,mixup,chimeramix MASK=both JOBS=2 \\"
	@echo "    LAUNCHER=submitit-local EXTRA='--amp on'    (add --gen-steps 4000 for the last table's generators: about"
	@echo "    25 min more, estimated from their 430-470 s per generator, not timed as a whole)"
	@echo ""
	@echo "The demo's experiment as one page (tables, sample grids, confusion matrices): checkpoints/demo/results.html"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --device $(DEVICE) $(EXTRA)

# <dataset>-spc<N>: both stages for every seed, then the table (results/<target>.md and .csv; with DATA, named from it).
DATASETS := cifair10 cifair100 stl10
SPCS := 5 10 20 30 50 100
EXPERIMENTS := $(foreach d,$(DATASETS),$(foreach n,$(SPCS),$(d)-spc$(n)))
COMPARISONS := $(addprefix compare-,$(EXPERIMENTS))
.PHONY: $(EXPERIMENTS) $(COMPARISONS)

# Result files are named from the data actually used: DATA=../shared/data/cifar10 writes results/cifar10-spc5.*,
# never results/cifair10-spc5.*, where a real ciFAIR-10 result lives. $(call result,TARGET) -> file-name prefix.
spc_of = $(word 2,$(subst -spc, ,$(1)))
result = $(if $(DATA),$(notdir $(patsubst %/,%,$(DATA)))-spc$(call spc_of,$(1)),$(1))

$(EXPERIMENTS): %: $(STAMP)
	$(BIN)/chimeramix experiment --data $(if $(DATA),$(DATA),$(word 1,$(subst -spc, ,$@))) \
		--spc $(word 2,$(subst -spc, ,$@)) --seeds $(SEEDS) --preset $(PRESET) --device $(DEVICE) --mask $(MASK) \
		--methods $(if $(METHODS),$(METHODS),none,chimeramix) --jobs $(JOBS) --launcher $(LAUNCHER) \
		--out-prefix results/$(call result,$@) $(EXTRA)

$(COMPARISONS): compare-%: $(STAMP)
	$(BIN)/chimeramix experiment --data $(if $(DATA),$(DATA),$(word 1,$(subst -spc, ,$*))) \
		--spc $(word 2,$(subst -spc, ,$*)) --seeds $(SEEDS) --preset $(PRESET) --device $(DEVICE) --mask both \
		--methods $(if $(METHODS),$(METHODS),all) --jobs $(JOBS) --launcher $(LAUNCHER) \
		--out-prefix results/compare-$(call result,$*) $(EXTRA)

# The paper's grid in one command: a table per (dataset, spc) and results/sweep/table1.md.
sweep: $(STAMP)
	$(BIN)/chimeramix sweep --datasets $(SWEEP_DATASETS) --spc $(SWEEP_SPC) --seeds $(SEEDS) --preset $(PRESET) \
		--device $(DEVICE) --mask $(MASK) --methods $(if $(METHODS),$(METHODS),none,chimeramix) --jobs $(JOBS) \
		--launcher $(LAUNCHER) --out results/sweep $(EXTRA)

clean-venv:
	rm -rf $(VENV)
