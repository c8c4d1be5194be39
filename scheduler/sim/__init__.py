"""Trace simulator: replay a node list and a pod list through the placement engine, in memory."""
