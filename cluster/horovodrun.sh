#!/usr/bin/env bash
# Multi-domain pretraining with horovodrun on one or more hosts (Gloo; MPI is used instead when
# Horovod was built with it and you pass --mpi).
#   cluster/horovodrun.sh cluster/configs/vot-otb.yaml runs/vot-otb            # all local GPUs/cores
#   NP=8 HOSTS=node1:4,node2:4 cluster/horovodrun.sh cluster/configs/got10k.yaml runs/got10k
#   RESUME=1 NP=4 cluster/horovodrun.sh cluster/configs/got10k.yaml runs/got10k  # continue (any NP)
# Extra arguments after the run folder go to mdnet-pretrain (e.g. --set train.cycles=50).
set -euo pipefail
CONFIG=${1:?usage: horovodrun.sh CONFIG OUT [mdnet-pretrain args...]}
OUT=${2:?usage: horovodrun.sh CONFIG OUT [mdnet-pretrain args...]}
shift 2
if command -v nvidia-smi >/dev/null 2>&1; then
  LOCAL=$(nvidia-smi -L | wc -l)       # one rank per GPU
else
  LOCAL=${LOCAL:-$(nproc)}             # CPU: one rank per core by default (threads = cores / ranks)
fi
NP=${NP:-$LOCAL}
HOSTS=${HOSTS:-localhost:$NP}
ARGS=(--config "$CONFIG" --out "$OUT")
[ "${RESUME:-0}" = 1 ] && ARGS+=(--resume)
# The same command on every rank; rank 0 writes logs, config, metrics and the shared checkpoint part.
exec horovodrun -np "$NP" -H "$HOSTS" mdnet-pretrain "${ARGS[@]}" "$@"
