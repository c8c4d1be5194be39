"""NVML access behind one interface: pynvml on real hosts, a fleet file in simulation."""

from agent.nvml.real import RealNvml
from agent.nvml.simulated import FAULT_KINDS, SimulatedNvml
from agent.nvml.types import (
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SW_POWER_CAP,
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN,
    GpuDevice,
    GpuSample,
    MigInstanceInfo,
    NvmlBackend,
    XidEvent,
)

__all__ = [
    "CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN",
    "CLOCK_EVENT_HW_SLOWDOWN",
    "CLOCK_EVENT_HW_THERMAL_SLOWDOWN",
    "CLOCK_EVENT_SW_POWER_CAP",
    "CLOCK_EVENT_SW_THERMAL_SLOWDOWN",
    "FAULT_KINDS",
    "GpuDevice",
    "GpuSample",
    "MigInstanceInfo",
    "NvmlBackend",
    "RealNvml",
    "SimulatedNvml",
    "XidEvent",
]
