"""Image–text pairs for CLIP-style pretraining (Radford et al. 2021) with ``crossmodal_contrastive``.

- :mod:`.captions`: the attribute vocabulary (shape, fill texture, colour) and the caption templates;
- :mod:`.render`: pictures drawn from those attributes (the shared procedural renderer's masks);
- :mod:`.tokens`: the caption tokenizer (trained on the training captions and cached) as a typed extra;
- :mod:`.items`: pretraining items ``{"image", "text", "index"}`` and the image transforms;
- :mod:`.pair_files`: reading real pairs from a JSONL / CSV ``image,caption`` file;
- :mod:`.datasets`: the registered builders ``procedural_image_text`` and ``image_text_pairs``;
- :mod:`.extras`: :class:`~.extras.ZeroShotTask`, labelled images with class names for the ``zero_shot``
  evaluator (:mod:`mmssl.crossmodal.zero_shot`).
"""
