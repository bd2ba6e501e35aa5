"""Image methods that need to know what an image is.

MAE / inpainting, rotation, jigsaw, context, colorization.
"""
