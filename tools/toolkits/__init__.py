"""The project's tracker behind the field's evaluation toolkits: the GOT-10k toolkit
(got10k_tracker.py) and the VOT toolkit through TraX (trax_server.py, vot_workspace.py).
docs/evaluation.md shows each with the commands that ran."""
