"""The tiny experiment's settings: a text data set and the ridge classifier's strength."""

from __future__ import annotations

from dataclasses import dataclass

from transferlab.config import EvaluationConfig, TrackingConfig, check_config, setting
from transferlab.data.text import TextDataConfig


@dataclass
class RidgeConfig:
    seed: int = setting(0, "the run's seed (a K-shot draw)")
    run_name: str | None = setting(None, "the run directory's name (null: a timestamp)")
    data: TextDataConfig = setting(help="the texts", factory=TextDataConfig)
    alpha: float = setting(1.0, "the ridge penalty", above=0)
    tracking: TrackingConfig = setting(help="where the run reports", factory=TrackingConfig)
    evaluation: EvaluationConfig = setting(help="how each figure's interval is computed", factory=EvaluationConfig)
    score_test: bool = setting(True, "false: validation only (a search's trials)")
    source: str = setting("", "where the config came from (filled by the loader)")

    def __post_init__(self) -> None:
        check_config(self)
