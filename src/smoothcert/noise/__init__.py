"""Torch noise kernels: sample noisy copies of an input on its device."""

from smoothcert.noise.gaussian import GaussianNoise

__all__ = ["GaussianNoise"]
