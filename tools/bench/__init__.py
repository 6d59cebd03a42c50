"""tools/bench: benchmarks: `mdnet-bench` (track, pretrain)."""
