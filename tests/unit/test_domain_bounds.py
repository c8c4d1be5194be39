"""Use cases stay safe without the API edge: non-finite numbers and huge input."""

from __future__ import annotations

import math

import pytest

from scheduler.domain.auto_layout import ModelRequest, resolve_model
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.quotas import validate_quota


@pytest.mark.parametrize("params", [math.nan, math.inf, -math.inf, 1e308, -1.0])
def test_resolve_model_rejects_non_finite_or_absurd_parameter_counts(params: float) -> None:
    with pytest.raises(InvalidArgument, match=r"model_spec\.params_billion must be a finite"):
        resolve_model(ModelRequest(params_billion=params))
    with pytest.raises(InvalidArgument, match=r"model_spec\.params_billion must be a finite"):
        resolve_model(ModelRequest(name="llama-3.1-70b", params_billion=params))


@pytest.mark.parametrize("utilization", [math.nan, math.inf, -math.inf])
def test_resolve_model_rejects_non_finite_memory_utilization(utilization: float) -> None:
    with pytest.raises(InvalidArgument, match="memory_utilization"):
        resolve_model(ModelRequest(params_billion=7, memory_utilization=utilization))


def test_an_unknown_model_name_is_quoted_short() -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_model(ModelRequest(name="m" * 20_000))
    assert "(20000 characters)" in raised.value.message
    assert len(raised.value.message) < 300


def test_an_unknown_dtype_is_quoted_short() -> None:
    with pytest.raises(InvalidArgument) as raised:
        resolve_model(ModelRequest(params_billion=7, dtype="d" * 20_000))
    assert len(raised.value.message) < 300


@pytest.mark.parametrize(
    ("quota", "weight", "message"),
    [
        (math.nan, 1.0, "quota_units"),
        (math.inf, 1.0, "quota_units"),
        (-1.0, 1.0, "quota_units"),
        (1e7, 1.0, "quota_units"),
        (1.0, math.nan, "weight"),
        (1.0, math.inf, "weight"),
        (1.0, 0.0, "weight"),
        (1.0, -2.0, "weight"),
    ],
)
def test_quota_and_weight_must_be_finite_and_in_range(
    quota: float, weight: float, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_quota(quota, weight)


def test_ordinary_quotas_pass() -> None:
    validate_quota(0.0, 1.0)
    validate_quota(12.5, 0.25)
