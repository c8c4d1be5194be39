"""The few metrics observed as things happen (latencies, batch sizes,
outcomes). Everything that is state (queue length, free capacity, leader)
is read at scrape time by scheduler.metrics.state instead.

They are process-wide and registered in no registry of their own: each
replica's registry (scheduler.metrics.state.scheduler_registry) adds them,
so several replicas in one test process do not collide.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Unary RPCs take from well under a millisecond (a cached read) to a
# pending-queue pass; streams are not timed (they last for hours).
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

API_LATENCY = Histogram(
    "gpupool_api_request_duration_seconds",
    "Unary gRPC calls by method and status code, as the interceptor saw them.",
    ["method", "code"],
    buckets=_LATENCY_BUCKETS,
    registry=None,
)
BATCH_SIZE = Histogram(
    "gpupool_allocator_batch_commands",
    "Commands the allocator committed in one transaction.",
    buckets=_BATCH_SIZE_BUCKETS,
    registry=None,
)
BATCH_LATENCY = Histogram(
    "gpupool_allocator_batch_duration_seconds",
    "Time from taking a batch to its commit (snapshot refresh, placement, writes).",
    buckets=_LATENCY_BUCKETS,
    registry=None,
)
PREEMPTIONS = Counter(
    "gpupool_preemptions",
    "Preempted allocations taken off their GPUs, by how: acknowledged by the holder "
    "or its agent, or at the grace deadline.",
    ["outcome"],
    registry=None,
)
DATABASE_ERRORS = Counter(
    "gpupool_database_errors",
    "Errors the database driver raised, by class (lost races included: UniqueViolation, "
    "CheckViolation; a lost connection: OperationalError).",
    ["error"],
    registry=None,
)

ALL = (API_LATENCY, BATCH_SIZE, BATCH_LATENCY, PREEMPTIONS, DATABASE_ERRORS)
