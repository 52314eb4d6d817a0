"""SpikeTrack's Lava processes (fixed_pt, CPU): one package per process, `process.py` + `models.py`.

Lava discovers models by executing every module of a process's package, so these packages hold
nothing else. All arithmetic is in `deploy.kernels` / `deploy.graph_eval` (numpy, no torch).
"""
