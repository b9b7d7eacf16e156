"""What every ``edge-albert`` command shares: click settings, the error-to-one-line group, small
option parsers and muting native library logs. One home, so the command modules stay thin."""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import click

from .errors import EdgeAlbertError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ErrorGroup(click.Group):
    """A click group that turns EdgeAlbertError into a one-line message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeAlbertError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {exc.one_line()}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; finished artifacts are kept, unfinished ones were"
                       " discarded", err=True)
            ctx.exit(130)


def csv_list(value: str | None) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``; None or empty -> ``()``."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@contextlib.contextmanager
def native_logs_muted(enabled: bool) -> Iterator[None]:
    """TensorFlow's and LiteRT's C++ code writes warnings straight to file descriptor 2; send those
    to /dev/null while keeping Python's stderr (the progress bar, our errors) on the terminal."""
    if not enabled:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    keep = os.fdopen(os.dup(saved), "w", buffering=1)
    old_stderr = sys.stderr
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        sys.stderr = keep
        yield
    finally:
        sys.stderr = old_stderr
        keep.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        keep.close()


__all__ = ["CONTEXT", "ErrorGroup", "csv_list", "native_logs_muted"]
