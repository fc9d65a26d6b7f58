"""Torch Monte Carlo engine: chunked class counts on the model's device."""

from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import count_classes, make_generator

__all__ = ["check_device", "count_classes", "make_generator"]
