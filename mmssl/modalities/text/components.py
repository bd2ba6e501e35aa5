"""Components of ``mmssl.modalities.text`` by name.

Read by :mod:`mmssl.registry` without importing them.

Each entry maps a recipe name to ``"module:attribute"``; the module is imported only when the name
is looked up. An entry given as ``(target, modality)`` overrides the table's ``MODALITY``.
"""

MODALITY = "text"

METHODS = {
    "mlm": "mmssl.modalities.text.methods:mlm",
    "clm": "mmssl.modalities.text.methods:clm",
}
ENCODERS = {
    "bert_small": "mmssl.modalities.text.encoders:bert_small",
    "gpt2_small": "mmssl.modalities.text.encoders:gpt2_small",
}
DATASETS = {
    "text_corpus": "mmssl.modalities.text.data:text_corpus",
}
EVALUATORS = {
    "perplexity": "mmssl.modalities.text.eval:perplexity_evaluator",
    "masked_accuracy": "mmssl.modalities.text.eval:masked_accuracy_evaluator",
    "train_throughput": "mmssl.modalities.text.eval:train_throughput_evaluator",
}
