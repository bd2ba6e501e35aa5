"""Recipe names of ``mmssl.modalities.pointcloud``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = "pointcloud"

METHODS = {
    "acd": "mmssl.modalities.pointcloud.acd_pretext:ACDPretext",
    "point_mae": "mmssl.modalities.pointcloud.point_mae:PointMAE",
}
ENCODERS = {
    "dgcnn": "mmssl.modalities.pointcloud.encoders:dgcnn",
    "pointnet2": "mmssl.modalities.pointcloud.encoders:pointnet2",
    "point_transformer": "mmssl.modalities.pointcloud.point_transformer:point_transformer",
}
DATASETS = {
    "procedural_parts": "mmssl.modalities.pointcloud.data:procedural_parts",
    "shapenetpart": "mmssl.modalities.pointcloud.data:shapenetpart",
    "mesh_folder": "mmssl.modalities.pointcloud.data:mesh_folder",
    "point_folder": "mmssl.modalities.pointcloud.data:point_folder",
}
EVALUATORS = {
    "part_segmentation": "mmssl.modalities.pointcloud.partseg.evaluator:part_segmentation_evaluator",
}
