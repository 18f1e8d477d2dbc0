"""A tiny experiment of the tests' own: TF-IDF + a ridge classifier. It shows what adding an experiment
takes: this folder (a config and a runner) plus one ``register(Experiment(...))`` call, nothing else."""
