"""Device names checked before any work: one check for every torch layer.

Example:
    >>> check_device("cpu")
    device(type='cpu')
"""

from __future__ import annotations

from typing import Any

import torch

from smoothcert.errors import InvalidParameterError


def check_device(device: Any) -> torch.device:
    """Parse a device name and check it is usable here.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``.

    Returns:
        The ``torch.device``.

    Raises:
        InvalidParameterError: if the name is not a device, or the device is not
            available on this machine.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidParameterError(
            f"device = {device!r} is invalid; valid: a torch device name such as 'cpu', "
            "'cuda', 'cuda:0' or 'mps'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(
                f"device = {device!r} is invalid; valid: 'cpu' (CUDA is not available here)"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InvalidParameterError(
                f"device = {device!r} is invalid; valid: cuda:0 .. cuda:{count - 1}"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidParameterError(
                f"device = {device!r} is invalid; valid: 'cpu' (MPS is not available here)"
            )
    elif dev.type != "cpu":
        raise InvalidParameterError(
            f"device = {device!r} is invalid; valid: 'cpu', 'cuda[:i]' or 'mps'"
        )
    return dev
