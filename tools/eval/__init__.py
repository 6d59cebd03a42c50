"""tools/eval: evaluation: `mdnet-eval` (score, run) and OpenCV baselines."""
