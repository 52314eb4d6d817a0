"""Energy profiler: per-layer counts + hardware profiles (YAML) -> energy breakdowns and reports."""
