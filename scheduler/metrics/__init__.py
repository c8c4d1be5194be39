"""Prometheus metrics of a scheduler replica: instruments observed on the
request and batch paths, and a collector that reads state at scrape time."""
