"""Every Deployments RPC has an access rule, and the ones that change state are audited.

(tests/unit/test_access_rules.py checks the table against the original three
services only; this covers issue 13's service.)"""

from __future__ import annotations

from gpupool.v1 import deployments_pb2
from scheduler.api.access import AUDITED, RULES
from scheduler.api.server import SERVICE_NAMES
from scheduler.domain.callers import Role

SERVICE = deployments_pb2.DESCRIPTOR.services_by_name["Deployments"]
METHODS = {f"/{SERVICE.full_name}/{m.name}" for m in SERVICE.methods}
WRITES = {"Create", "Scale", "Pause", "Resume", "Delete"}


def test_every_deployments_rpc_has_a_rule() -> None:
    assert set(RULES) >= METHODS
    assert SERVICE.full_name in SERVICE_NAMES


def test_writes_are_audited_and_not_for_viewers() -> None:
    for method in METHODS:
        name = method.rsplit("/", 1)[1]
        if name in WRITES:
            assert method in AUDITED
            assert Role.VIEWER not in RULES[method] and Role.AGENT not in RULES[method]
        else:
            assert method not in AUDITED
            assert Role.VIEWER in RULES[method]
