"""tools/weights: weight files in and out: `mdnet-export`, `mdnet-import` (MatConvNet)."""
