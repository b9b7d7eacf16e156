"""One error hierarchy for the whole toolchain and the device runtime.

The library raises these; only the CLI turns them into a one-line message (``error: ...``),
an optional ``hint:`` line and a non-zero exit code. Anything else that escapes is a bug and
keeps its traceback.

This module imports nothing heavy: the device runtime uses it too.
"""
from __future__ import annotations

from pathlib import Path


class EdgeAlbertError(Exception):
    """Root of every error the project raises on purpose.

    ``where`` names the file (and ``line`` the line, ``key`` the config key) the problem is in,
    so the one-line message reads ``<file>:<line>: <what was expected>``.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        where: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.where = str(where) if where is not None else None
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``file:line: key: message`` with the parts that are known."""
        parts: list[str] = []
        if self.where:
            parts.append(self.where if self.line is None else f"{self.where}:{self.line}")
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)


class DataError(EdgeAlbertError):
    """A data file is missing, malformed, or does not fit the task."""

    exit_code = 3


class ConfigError(EdgeAlbertError):
    """A config file, key, value or ``--set`` override is wrong."""

    exit_code = 2


class ModelError(EdgeAlbertError):
    """A model directory or hub id cannot be loaded, or is the wrong kind of model."""

    exit_code = 4


class TokenizerError(ModelError):
    """A tokenizer directory is missing its pieces or does not fit the model."""


class ConversionError(EdgeAlbertError):
    """Export, quantization or conversion failed, or missed its parity gate."""

    exit_code = 5


class AccuracyGateError(EdgeAlbertError):
    """An artifact's accuracy fell further below the reference than the budget allows."""

    exit_code = 6


class RuntimeBackendError(EdgeAlbertError):
    """An interpreter is missing, or refused to load or run a model file."""

    exit_code = 7


class ArtifactError(EdgeAlbertError):
    """An artifact directory or its manifest is missing, incomplete, or does not match its files."""

    exit_code = 8


__all__ = [
    "AccuracyGateError",
    "ArtifactError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "EdgeAlbertError",
    "ModelError",
    "RuntimeBackendError",
    "TokenizerError",
]
