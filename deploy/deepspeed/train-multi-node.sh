#!/usr/bin/env bash
# Several nodes listed in a hostfile (`host slots=N` per line, see hostfile.example); run on the first
# host, which must reach the others over passwordless SSH and share the repo, data and output paths:
#   HOSTFILE=deploy/deepspeed/hostfile deploy/deepspeed/train-multi-node.sh cpt training/recipes/smollm2-cpt.yaml model=/models/base
# MASTER_ADDR defaults to this host; NCCL picks the network (set NCCL_SOCKET_IFNAME if it picks wrong).
set -euo pipefail
stage=${1:?stage: cpt|sft|dpo}; recipe=${2:?recipe yaml}; shift 2
HOSTFILE=${HOSTFILE:-$(dirname "$0")/hostfile}
[ -f "${HOSTFILE}" ] || { echo "error: hostfile ${HOSTFILE} not found (copy hostfile.example)" >&2; exit 2; }
ZERO=${ZERO:-3}
OFFLOAD=${OFFLOAD:-none}
BF16=${BF16:-true}
MASTER_ADDR=${MASTER_ADDR:-$(hostname -I | awk '{print $1}')}
MASTER_PORT=${MASTER_PORT:-29500}
exec deepspeed --hostfile "${HOSTFILE}" --master_addr "${MASTER_ADDR}" --master_port "${MASTER_PORT}" \
  --module training "${stage}" --config "${recipe}" \
  deepspeed_stage="${ZERO}" deepspeed_offload="${OFFLOAD}" bf16="${BF16}" "$@"
