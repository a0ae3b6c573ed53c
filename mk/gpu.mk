# SAM3 on a GPU (issue: the prepared GPU check). `make gpu-check` runs bench/gpu_check.py in the
# model environment: on a CUDA host with the full-size random-weight SAM3, elsewhere with the tiny
# model on the CPU (what it could not run is written in its report). Output: $(GPU_CHECK_OUT) or $OUT.
GPU_CHECK_OUT ?= $(or $(OUT),.gpu-check)
GPU_KIT ?= .gpu-kit
GPU_WHEELS ?= .gpu-wheels
# The device host has Python 3.12, glibc >= 2.35 (nvidia-pytriton needs it) and no network: wheels
# for it, packed by bench/gpu_kit.sh.
GPU_KIT_WHEELS := nvidia-pytriton==0.7.0 numpy==1.26.4 tritonclient==2.73.0 grpcio==1.85.3 python-rapidjson==1.25 \
	ml_dtypes==0.5.4 googleapis-common-protos==1.76.0
GPU_KIT_PLATFORMS := --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any

.PHONY: gpu-check gpu-kit

gpu-check: model-venv tiny-model
	$(MODEL_PY) -m bench.gpu_check --out $(GPU_CHECK_OUT)

$(GPU_KIT)/kit.tar.xz: mk/gpu.mk bench/gpu_kit.sh
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 $(GPU_KIT_PLATFORMS) \
		-d $(GPU_WHEELS) $(GPU_KIT_WHEELS)
	bash bench/gpu_kit.sh $(GPU_WHEELS) $(GPU_KIT)

gpu-kit: $(GPU_KIT)/kit.tar.xz
