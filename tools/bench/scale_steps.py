"""Paired step times for `mdnet-bench scale`: does a step cost more with 10,000 domains than with 10?

    python -m tools.bench.scale_steps OUT.json STEPS SMALL.h5 BIG.h5 [KEY=VALUE ...]

On a machine shared with other jobs, two runs minutes apart differ by 30% or more in step time
(measured while writing issue 28: the same 10-domain run took 1.3 to 2.2 s a step), so
comparing the horovodrun runs cannot resolve 5%. Here ONE process builds two trainers on the same
config, one per pack, and runs their steps alternately (A B, B A, A B, ...): a slow spell of the
machine falls on both, and the median of the per-pair ratios B / A is the step's growth with the
number of domains. One process, world size 1 (no Horovod): the step code is the same, the
allreduce a no-op; what could grow with domains (the branch lookup, the optimizer of the active
branch, the prefetch) is all in it.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

SKIP = 2  # first steps per trainer: graph building and allocation
PARTS = ("data_wait_s", "mining_s", "net_s", "allreduce_update_s")


def paired_steps(packs: list, steps: int, overrides: list) -> dict:
    from pretrain import distributed as dist
    from pretrain.config import load
    from pretrain.trainer import Pretrainer
    from tools.bench.scale import BASE_CONFIG, RUN_OVERRIDES

    world = dist.init()
    log = logging.getLogger("mdnet-bench-scale-steps")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    trainers = []
    with tempfile.TemporaryDirectory(prefix="mdnet-scale-steps-") as tmp:
        for k, pack in enumerate(packs):
            cfg = load(BASE_CONFIG, [*RUN_OVERRIDES, *overrides, "data.roots=[]", f"data.packs=[{pack}]",
                                     f"train.stop_at_step={steps}", "val.enabled=false"])
            t = Pretrainer(cfg, world, Path(tmp) / str(k), log)
            t.setup()
            trainers.append(t)
        times = [[] for _ in trainers]
        parts = [[] for _ in trainers]
        cpu = [[] for _ in trainers]  # CPU seconds of the whole process over the step
        try:
            for s in range(steps):
                order = range(len(trainers)) if s % 2 == 0 else reversed(range(len(trainers)))
                for i in order:
                    c0 = time.process_time()
                    st = trainers[i].run_step(s)
                    cpu[i].append(time.process_time() - c0)
                    times[i].append(st.step_s)
                    parts[i].append([getattr(st, k) for k in PARTS])
        finally:
            for t in trainers:
                t.prefetch.close()
    import numpy as np
    a, b = (np.asarray(t[SKIP:]) for t in times[:2])
    ratios = b / a
    ca, cb = (np.asarray(c[SKIP:]) for c in cpu[:2])
    return {"domains": [len(t.domains) for t in trainers], "steps_timed": len(a),
            "step_s_median": [float(np.median(a)), float(np.median(b))],
            "ratio_median": float(np.median(ratios)),
            "ratio_quartiles": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
            # CPU time of the process over each step (compute threads, the prefetch threads of both
            # trainers): less sensitive than wall time to other jobs taking the cores.
            "cpu_s_median": [float(np.median(ca)), float(np.median(cb))],
            "cpu_ratio_median": float(np.median(cb / ca)),
            "cpu_ratio_quartiles": [float(np.percentile(cb / ca, 25)), float(np.percentile(cb / ca, 75))],
            # Where a difference sits: median seconds of each part of the step, per trainer.
            "parts_median_s": [dict(zip(PARTS, np.median(np.asarray(p[SKIP:]), axis=0).tolist())) for p in parts]}


def main(argv) -> int:
    out, steps, small, big, *overrides = argv
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before MXNet loads (tools/bench/scale.py _env)
    result = paired_steps([small, big], int(steps), overrides)
    Path(out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
