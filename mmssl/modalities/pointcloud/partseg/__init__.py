"""Few-shot part segmentation (ShapeNetPart protocol), evaluator ``part_segmentation``.

Protocol (Gadelha et al., ECCV 2020, Sec. 4; the standard ShapeNetPart evaluation):

* K in ``shots`` labelled shapes **per category** are drawn from ``eval_train`` with each seed
  (:func:`~.splits.sample_k_shot`); the whole ``eval_test`` split is segmented.
* ``ft``: the encoder and a per-point linear classifier over all parts are fine-tuned together
  (the paper's variant: Adam, lr 1e-3, weight decay 1e-4, scale + shift augmentation, per-point
  cross-entropy), optionally jointly with the ACD loss on unlabelled shapes (``acd_weight``; the
  paper uses 10). ``linear``: the encoder is frozen and only a per-point linear classifier is
  trained on its tokens.
* A shape's prediction is the argmax over the parts of **its category only** (the category is
  known at test time). Its IoU is the mean over those parts of ``|pred & true| / |pred | true|``,
  where a part absent from both prediction and ground truth counts as 1.
* ``instance_miou``: mean over all test shapes; ``class_miou``: mean over categories of the mean of
  their shapes. Each is reported as the mean over seeds (``fewshot{K}_{ft|linear}_{class|instance}_miou``)
  and the population std (``..._std``).

Data: ``eval_train`` / ``eval_test`` items ``{"points" [N, 3], "normals" [N, 3], "parts" [N]
(global part ids), "category": int}`` and a
:class:`~mmssl.modalities.pointcloud.taxonomy.PartTaxonomy` in ``data.extras``.

One job per module: :mod:`.metrics` (IoU rules and averages), :mod:`.splits` (stacked splits and K-shot
draws), :mod:`.model` (the segmenter and its predictions), :mod:`.train` (fine-tuning and the linear
probe), :mod:`.figures` (renders of predictions), :mod:`.evaluator` (the registered evaluator).
"""
