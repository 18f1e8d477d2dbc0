"""The features experiment's settings: data, encoder, classifier and what the run records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transferlab.config import EvaluationConfig, TrackingConfig
from transferlab.data.text import TextDataConfig
from transferlab.errors import TransferlabError
from transferlab.models.classifiers import ClassifierConfig
from transferlab.models.text_encoder import EncoderConfig


@dataclass
class FeaturesConfig:
    seed: int = 0
    run_name: str | None = None
    data: TextDataConfig = field(default_factory=TextDataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    # more classifiers fitted on the same vectors with the same C search, as methods features_<name>
    also_classifiers: list[Literal["svc", "linear_svc", "logreg"]] = field(default_factory=list)
    cache: bool = True
    cache_dir: str | None = None  # default: <output_dir>/cache/features
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    score_test: bool = True  # false: validation only (a search's trials); the search's final run scores test once
    source: str = ""  # where the config came from (filled by the loader)

    def validate(self) -> None:
        self.encoder.validate()
        self.classifier.validate()
        if self.classifier.name in self.also_classifiers or len(set(self.also_classifiers)) < len(self.also_classifiers):
            raise TransferlabError(f"also_classifiers={self.also_classifiers} repeats a classifier (the primary is "
                                   f"classifier.name={self.classifier.name}): list each other classifier once")
