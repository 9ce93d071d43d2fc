#!/usr/bin/env bash
# Start one vLLM replica of a Keel checkpoint on a GPU host (the scale-out path).
#   usage: deploy/serving/vllm-replica.sh CHECKPOINT_DIR [PORT]
# The replica must be reachable only from the Keel platform host (firewall / private network):
# vLLM's admin routes (pause, reload_weights, reset_prefix_cache) are unauthenticated, and Keel uses
# them for in-place hot swap, so VLLM_SERVER_DEV_MODE=1 is set.
set -euo pipefail
CKPT=${1:?checkpoint folder}
PORT=${2:-8100}
export VLLM_SERVER_DEV_MODE=1
# Idle connections from the gateway stay open well past its pool's 3 s expiry (vLLM's default is 5 s).
export VLLM_HTTP_TIMEOUT_KEEP_ALIVE=${VLLM_HTTP_TIMEOUT_KEEP_ALIVE:-75}
exec python -m vllm.entrypoints.openai.api_server \
  --model "$CKPT" --served-model-name keel \
  --host "${VLLM_HOST:-0.0.0.0}" --port "$PORT" \
  --gpu-memory-utilization "${GPU_MEM_UTIL:-0.85}" \
  --max-model-len "${MAX_MODEL_LEN:-4096}"
