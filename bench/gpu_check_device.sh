#!/usr/bin/env bash
# `make gpu-check` on a GPU host that has torch and transformers but no network and no Triton (the
# device run; see bench/gpu_check.py): a venv over the host's site-packages with the kit of
# bench/gpu_kit.sh unpacked into it (its numpy 1.26 shadows the host's numpy 2 for the Triton stubs),
# then the check, writing its JSON and markdown to $OUT.
set -euo pipefail
kit=${GPU_KIT:-.gpu-kit}/kit.tar.xz
env_dir=${GPU_ENV:-/tmp/s3-gpu-env}
python=${PYTHON:-python3}
test -f "$kit" || { echo "no $kit: run \`make gpu-kit\` where there is network, and carry .gpu-kit" >&2; exit 2; }
rm -rf "$env_dir"
"$python" -m venv --system-site-packages --without-pip "$env_dir"
site=$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tar -xJf "$kit" -C "$site" --strip-components=1
"$env_dir/bin/python" -c 'import numpy, torch, transformers, tritonclient.grpc, pytriton; print("numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())'
exec "$env_dir/bin/python" -m bench.gpu_check --out "${OUT:?set OUT}" --model-venv "$env_dir" --work /tmp/s3-gpu-work "$@"
