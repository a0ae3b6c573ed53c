# SAM3 serving: the model environment (bundled Triton server, onnxruntime, export tools), the tiny
# model export used by the tests and by `make serve` without weights, and perf_analyzer for benchmarks.
MODEL_VENV ?= .venv-model
# Python 3.11: the CPU build of torch 2.13.0 these machines carry is a cp311 wheel (another Python
# would pull PyPI's multi-GB CUDA build), and the bundled Triton has a python backend stub for it.
MODEL_PYTHON ?= python3.11
MODEL_PY := $(MODEL_VENV)/bin/python
MODEL_STAMP := $(MODEL_VENV)/.installed-stamp
MODEL_REQS := mk/model-requirements.txt
# Where `make test` keeps the exported tiny model (the tests reuse it; S3_DATA_DIR is the service's).
MODEL_ARTIFACTS ?= .artifacts
PERF_VENV ?= .venv-perf
PERF_STAMP := $(PERF_VENV)/.installed-stamp

.PHONY: model-venv tiny-model model-configs perf-tools triton-bench

$(MODEL_STAMP): $(MODEL_REQS)
	@test -x $(MODEL_PY) || $(MODEL_PYTHON) -m venv $(MODEL_VENV)
	$(MODEL_PY) -m pip install -q --upgrade pip
	$(MODEL_PY) -m pip install -q -r $(MODEL_REQS)
	@touch $(MODEL_STAMP)

model-venv: $(MODEL_STAMP)

# Idempotent: the export is keyed by checkpoint + export code version and reused when present.
tiny-model: model-venv
	$(MODEL_PY) -m scripts.export_onnx_trt --tiny --data-dir $(MODEL_ARTIFACTS)

# Rewrite server/inference/model_repository/*/config.pbtxt and configs/gpu.pbtxt from server/inference/triton_repository.py.
model-configs: venv
	$(BIN)/python -m server.inference.triton_repository

# perf_analyzer ships in the tritonclient 2.51.0 wheel; it needs Debian's libb64 and the CUDA
# runtime library (pip) even on a CPU host. Own environment: it pins tritonclient.
$(PERF_STAMP): mk/model.mk
	@dpkg -s libb64-0d >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libb64-0d; }
	@test -x $(PERF_VENV)/bin/python || $(PY) -m venv $(PERF_VENV)
	$(PERF_VENV)/bin/python -m pip install -q "tritonclient[grpc]==2.51.0" nvidia-cuda-runtime-cu12
	@touch $(PERF_STAMP)

perf-tools: $(PERF_STAMP)

# The Triton part of `make bench` on its own (writes bench/triton_results.json).
triton-bench: venv model-venv tiny-model perf-tools
	$(BIN)/python -m bench.triton_bench

TEST_DEPS += model-venv tiny-model
SERVE_DEPS += model-venv
bench: model-venv tiny-model perf-tools

# The full-size tier (not part of `make test`): builds the seeded full-size random-weight SAM3
# (default Sam3Config, published layout) offline, lets the service export and serve it through the
# local Triton, and runs one photo through the REST API with the whole interior palette. Needs about
# 13 GB of memory; the checkpoint and export stay in $(FULL_DIR) between runs.
FULL_DIR ?= .full
.PHONY: test-full
test-full: venv model-venv
	S3_TEST_FULL=1 S3_FULL_DIR=$(abspath $(FULL_DIR)) $(BIN)/python -m pytest tests/full -x -q --timeout=3600 $(PYTEST_ARGS)
