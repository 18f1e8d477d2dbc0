"""The features experiment's settings: data, encoder, classifier and what the run records. The defaults are
the offline preset's (``configs/offline/features.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transferlab.config import RunConfig, setting
from transferlab.data.text import TextDataConfig
from transferlab.errors import TransferlabError
from transferlab.models.classifiers import ClassifierConfig
from transferlab.models.text_encoder import EncoderConfig


def offline_encoder() -> EncoderConfig:
    """The searched encoder settings: the last three layers, each mean-pooled, concatenated (issue 20)."""
    return EncoderConfig(max_length=128, layers=[-3, -2, -1])


def offline_classifier() -> ClassifierConfig:
    """The searched classifier: an unstandardised SVC, C chosen on validation from a grid around 0.66."""
    return ClassifierConfig(standardize=False, C_grid=[0.3, 0.66, 1.5])


@dataclass
class FeaturesConfig(RunConfig):
    seed: int = setting(0, "the run's seed (the classifier's randomness, a K-shot draw)")
    data: TextDataConfig = setting(help="the texts: where they come from, a limit, a label budget",
                                   factory=TextDataConfig)
    encoder: EncoderConfig = setting(help="the frozen text encoder and how its hidden states are pooled",
                                     factory=offline_encoder)
    classifier: ClassifierConfig = setting(help="the classifier fitted on the vectors, its C chosen on validation",
                                           factory=offline_classifier)
    also_classifiers: list[Literal["svc", "linear_svc", "logreg"]] = setting(
        help="more classifiers fitted on the same vectors with the same C search, as methods features_<name>",
        factory=list)
    cache: bool = setting(True, "cache the encoded vectors (keyed by weights, settings and data)")
    cache_dir: str | None = setting(None, "the vector cache's folder (null: <output_dir>/cache/features)")
    def validate(self) -> None:
        if self.classifier.name in self.also_classifiers or len(set(self.also_classifiers)) < len(self.also_classifiers):
            raise TransferlabError(f"also_classifiers={self.also_classifiers} repeats a classifier (the primary is "
                                   f"classifier.name={self.classifier.name}): list each other classifier once")
