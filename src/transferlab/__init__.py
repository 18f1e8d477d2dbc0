"""transferlab: transfer-learning experiments with pretrained transformers."""

__version__ = "0.1.0"
