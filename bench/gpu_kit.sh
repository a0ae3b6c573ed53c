#!/usr/bin/env bash
# Pack what `make gpu-check` needs on a GPU host without network and without Triton into one archive
# that fits the 64 MiB a device run carries: the bundled tritonserver of nvidia-pytriton (binary,
# python backend, the Python 3.12 stub, its libraries), numpy 1.26 (the stub's pybind11 needs numpy < 2),
# tritonclient and what its gRPC client imports (grpcio, python-rapidjson, ml_dtypes).
# Usage: bench/gpu_kit.sh WHEELS_DIR KIT_DIR (the wheels come from `make gpu-kit`).
set -euo pipefail
wheels=$1
kit=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for wheel in "$wheels"/*.whl; do
    python3 -m zipfile -e "$wheel" "$stage/unpacked"
done
site=$stage/site
server=$stage/unpacked/pytriton/tritonserver
mkdir -p "$site/pytriton/tritonserver/python_backend_stubs"
cp -r "$server/bin" "$server/backends" "$site/pytriton/tritonserver/"
cp -r "$server/python_backend_stubs/3.12" "$site/pytriton/tritonserver/python_backend_stubs/"
chmod +x "$site/pytriton/tritonserver/bin/tritonserver" "$site/pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub"
# The server's files only: LocalTriton finds the server through `import pytriton`.
echo '"""The tritonserver files of nvidia-pytriton 0.7.0 (its Python package is left out by bench/gpu_kit.sh)."""' \
    > "$site/pytriton/__init__.py"
cp -r "$stage/unpacked/nvidia_pytriton.libs" "$site/"
rm -f "$site"/nvidia_pytriton.libs/libpython3-*  # the Python 3.13 stub's; the host runs 3.12
# Everything else the wheels hold (numpy, tritonclient, grpc, rapidjson, ml_dtypes, their dist-info),
# less the client's perf tools (*.data) and pytriton's own Python package.
for entry in "$stage"/unpacked/*; do
    case $(basename "$entry") in pytriton | nvidia_pytriton* | *.data) ;; *) cp -r "$entry" "$site/" ;; esac
done
mkdir -p "$kit"
tar -C "$stage" -cf - site | xz -T0 -6 > "$kit/kit.tar.xz.tmp"
mv "$kit/kit.tar.xz.tmp" "$kit/kit.tar.xz"
du -b "$kit/kit.tar.xz"
