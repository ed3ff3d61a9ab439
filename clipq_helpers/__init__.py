"""CLIP-Q helper package."""
