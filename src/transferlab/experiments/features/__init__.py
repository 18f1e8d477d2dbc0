"""Experiment 1: frozen encoder features + a classical classifier: its config and its runner."""

from transferlab.experiments.features.config import FeaturesConfig
from transferlab.experiments.features.runner import EXPERIMENT, load_classifier, run_features

__all__ = ["EXPERIMENT", "FeaturesConfig", "load_classifier", "run_features"]
