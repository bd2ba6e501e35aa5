"""Components of ``mmssl.core`` by name.

Read by :mod:`mmssl.registry` without importing them.

Each entry maps a recipe name to ``"module:attribute"``; the module is imported only when the name
is looked up. An entry given as ``(target, modality)`` overrides the table's ``MODALITY``.
"""

MODALITY = None

METHODS = {
    "simclr": "mmssl.core.methods.simclr:SimCLR",
    "moco": "mmssl.core.methods.moco:MoCo",
    "byol": "mmssl.core.methods.byol:BYOL",
}
