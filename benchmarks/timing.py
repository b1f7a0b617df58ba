"""Shared by the benchmark scripts (``from timing import ...``): the library's side-by-side timing and machine
description, re-exported."""

from ContrastSegLib.benchmark.timing import (
    interleaved_medians, machine_description, machine_with_plans, repeat, synchronize,
)

__all__ = ["interleaved_medians", "machine_description", "machine_with_plans", "repeat", "synchronize"]
