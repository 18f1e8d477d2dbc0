"""SetFit (Tunstall et al. 2022), the few-shot text baseline: its config and its runner."""

from transferlab.experiments.setfit.config import SetFitConfig, SetFitSettings
from transferlab.experiments.setfit.runner import EXPERIMENT, load_setfit_model, pair_count, run_setfit

__all__ = ["EXPERIMENT", "SetFitConfig", "SetFitSettings", "load_setfit_model", "pair_count", "run_setfit"]
