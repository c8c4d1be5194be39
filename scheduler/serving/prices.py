"""The price table: on-demand and spot price per GPU-hour for each catalogue GPU model.

Loaded from YAML (deploy/prices.yaml by default; the figures in it are
examples) and checked with pydantic: every key must be a catalogue GPU
model, every price a finite number ≥ 0, and spot no dearer than on-demand.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import InvalidArgument, NotFound, quoted

DEFAULT_PRICES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prices.yaml"
PRICES_ENV = "GPUPOOL_PRICES"


class GpuPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_demand_per_hour: float = Field(ge=0)
    spot_per_hour: float = Field(ge=0)

    @model_validator(mode="after")
    def _spot_not_dearer(self) -> GpuPrice:
        if not (math.isfinite(self.on_demand_per_hour) and math.isfinite(self.spot_per_hour)):
            raise ValueError("prices must be finite")
        if self.spot_per_hour > self.on_demand_per_hour:
            raise ValueError("spot_per_hour must not exceed on_demand_per_hour")
        return self

    def per_hour(self, spot: bool) -> float:
        return self.spot_per_hour if spot else self.on_demand_per_hour


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(default="USD", min_length=1, max_length=8)
    gpus: dict[str, GpuPrice]

    @field_validator("gpus")
    @classmethod
    def _known_models(cls, gpus: dict[str, GpuPrice]) -> dict[str, GpuPrice]:
        unknown = sorted(set(gpus) - set(CATALOGUE))
        if unknown:
            raise ValueError(
                f"not catalogue GPU models: {', '.join(unknown)} (known: {', '.join(CATALOGUE)})"
            )
        return gpus

    def price(self, gpu_model: str) -> GpuPrice:
        """The price of `gpu_model`; NotFound naming the file's gap if it has none."""
        price = self.gpus.get(gpu_model)
        if price is None:
            raise NotFound(f"the price table has no price for GPU model {quoted(gpu_model)}")
        return price

    def per_hour(self, gpu_model: str, spot: bool = False) -> float:
        return self.price(gpu_model).per_hour(spot)


def parse_prices(text: str, source: str = "prices") -> PriceTable:
    """A PriceTable from YAML text; InvalidArgument saying what is wrong where."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{source}: not YAML ({exc})") from exc
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidArgument(f"{source}: {problems}") from exc


def load_prices(path: Path | str | None = None) -> PriceTable:
    """The table at `path`, else $GPUPOOL_PRICES, else deploy/prices.yaml."""
    chosen = Path(path or os.environ.get(PRICES_ENV) or DEFAULT_PRICES_FILE)
    return parse_prices(chosen.read_text(encoding="utf-8"), str(chosen))
