"""Experiment 3: CLIP-style zero-shot classification and LoRA fine-tuning on Tiny ImageNet.

The runners are ``zeroshot.run_zeroshot`` and ``lora.run_lora`` (the experiment registry names them);
``inputs`` holds what both start from; the CLIP library they use lives in ``transferlab.models``
(``zero_shot``, ``prompt_classifier``, ``clip_losses``, ``linear_probe``, ``dual_encoder_lora``,
``dual_encoder_factory``).
"""
