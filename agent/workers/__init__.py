"""Launching and supervising the parallel inference workers of the
allocations placed on this node (one process per rank, or per node for
engines that spawn their own rank processes)."""
