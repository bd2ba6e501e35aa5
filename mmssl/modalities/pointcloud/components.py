"""Components of ``mmssl.modalities.pointcloud`` by name.

Read by :mod:`mmssl.registry` without importing them.

Each entry maps a recipe name to ``"module:attribute"``; the module is imported only when the name
is looked up. An entry given as ``(target, modality)`` overrides the table's ``MODALITY``.
"""

MODALITY = "pointcloud"

METHODS = {
    "acd": "mmssl.modalities.pointcloud.acd_pretext:acd",
}
ENCODERS = {
    "dgcnn": "mmssl.modalities.pointcloud.encoders:dgcnn",
    "pointnet2": "mmssl.modalities.pointcloud.encoders:pointnet2",
}
DATASETS = {
    "procedural_parts": "mmssl.modalities.pointcloud.data:procedural_parts",
    "shapenetpart": "mmssl.modalities.pointcloud.data:shapenetpart",
    "mesh_folder": "mmssl.modalities.pointcloud.data:mesh_folder",
}
EVALUATORS = {
    "part_segmentation": "mmssl.modalities.pointcloud.partseg.evaluator:part_segmentation_evaluator",
}
