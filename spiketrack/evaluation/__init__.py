"""One-pass evaluation (OPE) of tracker results: metrics, comparison reports and plots."""
