"""The allocator: the one writer of who holds which GPU.

One batching thread per replica (allocator.py) owns the in-memory fleet
snapshot and turns queued commands (commands.py) into one transaction: releases,
requeues, revocations and preemption notices (revoking.py), then on the leader
the pending queue, then new requests (placing.py, preempting.py). batch.py is
what one transaction writes; notifier.py wakes watchers after commit. The
use cases in scheduler/services send it commands and wait for the answer.
"""
