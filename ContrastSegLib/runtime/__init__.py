"""What training and inference both run on: the execution plan (device, precision), checkpoints, progress events
and stop requests. Import the modules themselves; ``stop`` needs no torch."""
