"""Studies: many runs of the experiments as one question (label-budget curves, hyper-parameter search)."""
