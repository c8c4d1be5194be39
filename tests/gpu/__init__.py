"""Tests that need a real NVIDIA GPU; each is skipped where NVML cannot start."""
