"""Point-cloud adapter: point and mesh I/O, ShapeNetPart layout, procedural part-annotated shapes,
approximate-convex-decomposition (ACD) labels, point backbones, the ACD pretext and few-shot part
segmentation.

Submodules register their components; ``mmssl.registry`` imports them by name.
"""
