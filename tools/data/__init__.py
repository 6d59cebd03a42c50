"""tools/data: data: `mdnet-data` (index, pack, synth) and the pretraining pool's rebuild."""
