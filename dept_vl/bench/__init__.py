"""``dept-vl bench``: speed and memory of every method side by side (speed.py), how a step is timed and its memory
measured (timing.py), and accuracy of every method on easy-vqa (quality.py)."""
