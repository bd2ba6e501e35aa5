"""Recipe names of ``mmssl.modalities.text``'s components (the table format: :mod:`mmssl.registry`)."""

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
