"""Explanations: batched Score-CAM maps for the ViT and the CNN, and how well they localise lesions."""
