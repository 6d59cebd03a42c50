#!/usr/bin/env bash
# Multi-domain pretraining with horovodrun on one or more hosts (Gloo; MPI is used instead when
# Horovod was built with it and you pass --mpi). The one launch script: cluster/slurm.sbatch and
# cluster/mpijob.yaml call it too.
#   cluster/horovodrun.sh cluster/configs/vot-otb.yaml runs/vot-otb            # all local GPUs/cores
#   NP=8 HOSTS=node1:4,node2:4 cluster/horovodrun.sh cluster/configs/got10k.yaml runs/got10k
#   NP=4 HOSTFILE=/etc/mpi/hostfile cluster/horovodrun.sh ...                  # hosts from a file
#   RESUME=1 NP=4 cluster/horovodrun.sh cluster/configs/got10k.yaml runs/got10k  # continue (any NP)
#   RESUME=auto ...     # continue when OUT has a complete checkpoint, else start (requeued jobs)
# Extra arguments after the run folder go to mdnet-pretrain (e.g. --set train.cycles=50).
# Environment: NP (ranks), HOSTS (host:slots,...) or HOSTFILE, RESUME (0 | 1 | auto); horovodrun
# and mdnet-pretrain come from PATH (`source .venv/bin/activate`).
set -euo pipefail
usage="usage: [NP=N] [HOSTS=h:s,..|HOSTFILE=f] [RESUME=0|1|auto] horovodrun.sh CONFIG OUT [mdnet-pretrain args...]"
CONFIG=${1:?$usage}
OUT=${2:?$usage}
shift 2
GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if [ "$GPUS" -gt 0 ]; then
  LOCAL=$GPUS                          # one rank per GPU
else
  LOCAL=${LOCAL:-$(nproc)}             # CPU: one rank per core by default (threads = cores / ranks)
fi
NP=${NP:-$LOCAL}
if [ -n "${HOSTFILE:-}" ]; then
  WHERE=(--hostfile "$HOSTFILE")
else
  WHERE=(-H "${HOSTS:-localhost:$NP}")
fi
ARGS=(--config "$CONFIG" --out "$OUT")
case "${RESUME:-0}" in
  1) ARGS+=(--resume) ;;
  # `latest` is written only when a checkpoint is complete (pretrain/checkpoint.py).
  # Otherwise start over: --force clears what a job killed before its first checkpoint left.
  auto) if [ -f "$OUT/checkpoints/latest" ]; then ARGS+=(--resume); else ARGS+=(--force); fi ;;
  0) ;;
  *) echo "horovodrun.sh: RESUME must be 0, 1 or auto (got '$RESUME')" >&2; exit 2 ;;
esac
# The same command on every rank; rank 0 writes logs, config, metrics and the shared checkpoint part.
exec horovodrun -np "$NP" "${WHERE[@]}" mdnet-pretrain "${ARGS[@]}" "$@"
