"""Imports every layer module so that each registers its specs (loaded lazily by base)."""

from . import activation, common, data, loss, normalization, python, recurrent, structure, \
    vision  # noqa: F401

__all__ = ["activation", "common", "data", "loss", "normalization", "python", "recurrent",
           "structure", "vision"]
