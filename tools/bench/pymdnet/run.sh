#!/usr/bin/env bash
# Run patched py-MDNet on the first N frames of an OTB sequence on the CPU and print the wall
# time of the whole python process (imports, model load, initial training, tracking).
#   bash tools/bench/pymdnet/run.sh [N=30]
# Overridable: PYMDNET_DIR (default ../pymdnet beside the repo: holds src/, venv/, mdnet-vggm-real-cpu.pth),
# SEQ (default ../shared/data/OTB/Crossing),
# MODEL, THREADS (2), PYMDNET_LRN (matconvnet | pymdnet, see README.md).
set -euo pipefail
N=${1:-30}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
PYMDNET_DIR=${PYMDNET_DIR:-$REPO/../pymdnet}
SEQ=${SEQ:-$REPO/../shared/data/OTB/Crossing}
MODEL=${MODEL:-$PYMDNET_DIR/mdnet-vggm-real-cpu.pth}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS MPLBACKEND=Agg
export PYMDNET_LRN=${PYMDNET_LRN:-matconvnet}

cd "$PYMDNET_DIR/src"  # run_tracker.py reads tracking/options.yaml relative to the cwd
start=$(date +%s.%N)
"$PYMDNET_DIR/venv/bin/python" tracking/run_tracker.py --seq-dir "$SEQ" --frames "$N" \
    --model "$MODEL" --threads "$THREADS"
end=$(date +%s.%N)
echo "py-MDNet wall time, $N frames of $(basename "$SEQ"), $THREADS threads:" \
     "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s"
