"""Torch noise kernels: sample noisy copies of an input on its device."""

from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.product import BoundTokenImageNoise, TokenImageNoise
from smoothcert.noise.tokens import BoundTokenNoise, TokenSubstitutionNoise

__all__ = [
    "BoundTokenImageNoise",
    "BoundTokenNoise",
    "GaussianNoise",
    "TokenImageNoise",
    "TokenSubstitutionNoise",
]
