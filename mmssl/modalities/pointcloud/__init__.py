"""Point-cloud adapter: point and mesh I/O, ShapeNetPart layout, procedural part-annotated shapes,
approximate-convex-decomposition (ACD) labels, point backbones, the ACD pretext and few-shot part
segmentation.

Components are listed in ``components.py`` beside this file and imported on first lookup.
"""
