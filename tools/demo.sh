#!/usr/bin/env bash
# The main job on the embedded default: synthetic sequences -> horovodrun pretraining -> export ->
# track held-out synthetic sequences with the pretrained and with random-init weights -> AUCs.
# Run through `make demo` (which installs first and puts .venv/bin on PATH).
set -euo pipefail
NP=${NP:-2}
DEMO_DIR=${DEMO_DIR:-work/demo}
CONFIG=${CONFIG:-cluster/configs/demo.yaml}
SEED=${SEED:-0}
mkdir -p "$DEMO_DIR"
T0=$SECONDS
missing=()

# A step runs only when the module behind its command exists; otherwise it is reported as missing,
# never faked.
have() { python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }
say() { echo "== demo [$((SECONDS - T0))s]: $*"; }

say "1/5 synthesize training and held-out sequences"
# Training and held-out sets come from different seeds: no held-out sequence is seen in training.
# Many short training sequences (domains) rather than a few long ones: that, and ~1000 steps per
# rank, is what made pretraining help (cluster/configs/demo.yaml,
# tests/pretrain/test_pretraining_helps.py). Same sizes as that test.
mdnet-data synth --out "$DEMO_DIR/synth-train" --sequences 64 --frames 30 --size 96x72 --seed 1
mdnet-data synth --out "$DEMO_DIR/synth-test" --sequences 8 --frames 20 --size 96x72 --seed 2

if have pretrain.cli; then
  say "2/5 pretrain with horovodrun -np $NP (Gloo, CPU)"
  rm -rf "$DEMO_DIR/run"
  horovodrun -np "$NP" -H "localhost:$NP" mdnet-pretrain --config "$CONFIG" --out "$DEMO_DIR/run" \
    --set "data.roots=[$DEMO_DIR/synth-train]" --set "seed=$SEED"
else
  missing+=("pretraining (pretrain/cli.py)")
fi

if have tools.weights.export && [ -d "$DEMO_DIR/run" ]; then
  say "3/5 export the shared layers"
  mdnet-export "$DEMO_DIR/run" --out "$DEMO_DIR/pretrained.h5"
  mdnet-export "$DEMO_DIR/run" --out "$DEMO_DIR/random.h5" --random-init "$SEED"
else
  missing+=("export (tools/weights/export.py)")
fi

if have online.cli && [ -f "$DEMO_DIR/pretrained.h5" ]; then
  # Two tracker seeds (sampling and fc6 init of the tracker): single tracks of a tiny net swing a
  # lot when one run loses the target and another does not; the AUC printed is the mean over
  # sequences and both seeds. The pretrained and the random-init tracker run side by side (one
  # process per core).
  for TSEED in 0 1; do
    say "4/5 track held-out sequences, tracker seed $TSEED: pretrained and random-init weights"
    pids=() logs=()
    for W in pretrained random; do
      mdnet-track --weights "$DEMO_DIR/$W.h5" "$DEMO_DIR/synth-test" --quiet \
        --out-dir "$DEMO_DIR/results-$W-s$TSEED" --seed "$TSEED" --summary-json "$DEMO_DIR/$W-s$TSEED.json" \
        > "$DEMO_DIR/track-$W-s$TSEED.log" 2>&1 &
      pids+=($!) logs+=("$DEMO_DIR/track-$W-s$TSEED.log")
    done
    for i in 0 1; do
      wait "${pids[$i]}" || { cat "${logs[$i]}"; echo "demo: mdnet-track failed (${logs[$i]})"; exit 1; }
    done
    cat "${logs[@]}"
  done
  say "5/5 compare"
  python - "$DEMO_DIR" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
auc = {w: [json.loads((d / f"{w}-s{s}.json").read_text())["overall"]["auc"] for s in (0, 1)]
       for w in ("pretrained", "random")}
for w, v in auc.items():
    print(f"{w}: mean success AUC {sum(v) / 2:.3f} (tracker seed 0: {v[0]:.3f}, seed 1: {v[1]:.3f})")
print(f"demo: pretrained AUC={sum(auc['pretrained']) / 2:.3f} random AUC={sum(auc['random']) / 2:.3f}")
PY
else
  missing+=("tracking (online/cli.py)")
fi

say "done in $((SECONDS - T0))s"
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo: these steps do not exist yet and were not run: ${missing[*]}"
fi
