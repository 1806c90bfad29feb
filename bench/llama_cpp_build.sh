#!/usr/bin/env bash
# llama.cpp for bench/llama_cpp_check.py, from PyPI only: the llama-cpp-python sdist vendors a
# llama.cpp source tree (convert_hf_to_gguf.py, gguf-py, the C++ runtime); this unpacks it to
# DIR/llama.cpp and builds its CPU library with the Python bindings into DIR/site.
#   bash bench/llama_cpp_build.sh DIR [VERSION]      # default 0.3.36 = llama.cpp 0c1e57098
# The build takes ~5 minutes on 2 cores (cmake and a C++ compiler needed); on a shared machine,
# run it under `nice`.
set -euo pipefail
dir=${1:?usage: bash bench/llama_cpp_build.sh DIR [VERSION]}
version=${2:-0.3.36}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
"$py" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$dir"
tar xzf "$dir/llama_cpp_python-$version.tar.gz" -C "$dir"
rm -rf "$dir/llama.cpp" && ln -s "llama_cpp_python-$version/vendor/llama.cpp" "$dir/llama.cpp"
grep -m1 -o "ggml-org/llama.cpp@[0-9a-f]*" "$dir/llama_cpp_python-$version/CHANGELOG.md" || true
CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF" CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} \
    "$py" -m pip wheel -q --no-deps -w "$dir/wheel" "$dir/llama_cpp_python-$version"
"$py" -m pip install -q --no-deps --upgrade --target "$dir/site" "$dir"/wheel/llama_cpp_python-"$version"-*.whl diskcache
echo "llama.cpp source: $dir/llama.cpp   bindings: $dir/site"
