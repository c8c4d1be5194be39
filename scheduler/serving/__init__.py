"""Serving models: engine performance, deployments, autoscaling, cost."""
