"""CLIP-Q benchmarks: ``python -m benchmarks.run`` measures accuracy, latency and size."""
