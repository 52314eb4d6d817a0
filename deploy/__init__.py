"""Deployment backends for SpikeTrack bundles (docs/FIXED_POINT.md semantics).

`deploy.backend` is the one interface (`get_backend(name).build(bundle) -> Runner`); `deploy.lava`
holds everything Lava-specific; `deploy.simulate` runs the tracker on a backend; `deploy.kernels`,
`deploy.graph_eval` and `deploy.partition` are plain numpy / Python shared by every backend.
"""
