"""Recipe names of ``mmssl.core``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = None

METHODS = {
    "simclr": "mmssl.core.methods.simclr:SimCLR",
    "moco": "mmssl.core.methods.moco:MoCo",
    "byol": "mmssl.core.methods.byol:BYOL",
}
