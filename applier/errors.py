"""Errors raised by the applier.

The applier is a pure library: it knows nothing of the service's contract codes. The service layer
translates ``ParamError`` into its ``VALIDATION_ERROR`` once, keeping ``field`` so the client learns
which parameter was wrong.
"""

from __future__ import annotations


class ApplierError(Exception):
    """Base of every error this package raises on purpose."""


class ParamError(ApplierError, ValueError):
    """A rule parameter is unknown, missing, of the wrong type or out of range."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class MaskError(ApplierError, ValueError):
    """A mask or layer does not fit the photo it is applied to."""
