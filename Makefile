# Two entry points for a newcomer: `make play` and `make test`.
# Without a GPU we pin the local CPU build of torch so pip never pulls a multi-GB CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")

.PHONY: play test install install-dev bench clean gpu-train gpu-check

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

play: install
	$(BIN)/worldplay play

test: install-dev
	$(BIN)/python -m pytest

bench: install
	$(BIN)/worldplay bench --source world --seconds 5

clean:
	rm -rf $(VENV)

# On a CUDA machine (torch, triton, einops, safetensors, tqdm; no network, no pygame, no PyAV):
# continue training the shipped model for MINUTES and leave, in OUT, the new fp16 shards
# (OUT/model/), the loss log and a --quick eval JSON, ready to copy into assets/ and commit.
# The run folder (with optimizer state) stays outside OUT. Runs from the tree, installs nothing.
MINUTES ?= 5
RUN ?= /tmp/worldplay-gpu-run
gpu-train: OUT ?= out/train
gpu-train:
	@mkdir -p $(OUT)/model
	PYTHONPATH=$(CURDIR) $(PY) -m worldplay train causal --device cuda --init mosaic-tiny --minutes $(MINUTES) \
		--out $(RUN) --cache $(RUN)-latents --no-progress --sample-minutes 100
	PYTHONPATH=$(CURDIR) $(PY) -m worldplay train export --vae mosaic-tiny --dit $(RUN) --out $(OUT)/model
	cp $(RUN)/losses.csv $(OUT)/losses.csv
	cp "$$(ls $(RUN)/samples/*.png | tail -1)" $(OUT)/samples.png
	PYTHONPATH=$(CURDIR) $(PY) -m worldplay eval --device cuda --quick --no-progress \
		--source model:$(OUT)/model@full,model:$(OUT)/model@off --json $(OUT)/eval.json

# On a CUDA machine (same packages as gpu-train; pytest if there): in under 4 minutes, the GPU
# tests, `python -m kernels.bench` and `worldplay bench` of the shipped model and base-random with
# --kernels torch and triton; their JSONs, log.txt and summary.md (FPS, kernel speed-up) land in
# OUT. Without CUDA it says so in one line. Runs from the tree, installs nothing.
gpu-check: OUT ?= out/gpu
gpu-check:
	@PYTHONPATH=$(CURDIR) $(PY) -m kernels.gpu_check --out $(OUT)
