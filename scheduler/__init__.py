"""gpupool scheduler: the central control plane of a pooled GPU fleet."""
