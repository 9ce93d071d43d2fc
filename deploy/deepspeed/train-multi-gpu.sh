#!/usr/bin/env bash
# One node, N GPUs, DeepSpeed ZeRO (default stage 2):
#   deploy/deepspeed/train-multi-gpu.sh sft training/recipes/smollm2-sft.yaml [key=value ...]
#   NUM_GPUS=4 ZERO=3 deploy/deepspeed/train-multi-gpu.sh cpt training/recipes/smollm2-cpt.yaml max_steps=-1
# The recipe's model/dataset/output_dir must be real paths (`keel train` resolves `base` for you; here
# set model=/path/to/hf-folder). Every rank runs `python -m training`; rank 0 writes the checkpoint.
set -euo pipefail
stage=${1:?stage: cpt|sft|dpo}; recipe=${2:?recipe yaml}; shift 2
NUM_GPUS=${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
ZERO=${ZERO:-2}
OFFLOAD=${OFFLOAD:-none}   # cpu: optimizer (and for ZeRO-3 params) offloaded to host memory
BF16=${BF16:-true}
exec deepspeed --num_gpus "${NUM_GPUS}" --module training "${stage}" --config "${recipe}" \
  deepspeed_stage="${ZERO}" deepspeed_offload="${OFFLOAD}" bf16="${BF16}" "$@"
