"""How an exception reaches the user: click's usage errors and geoidec's user errors (bad
data, settings, paths, full disk, unreadable rasters) as one line; anything else is a bug and
keeps its traceback."""

from __future__ import annotations

from geoidec.errors import UsageError


def is_click(exc: BaseException, name: str) -> bool:
    """``exc`` is click's exception ``name`` or derives from it (whether typer vendors click
    or not; geoidec's own UsageError is not click's)."""
    return any(t.__name__ == name and "click" in t.__module__ for t in type(exc).__mro__)


def user_message(exc: Exception) -> str | None:
    """The one-line message of a user error (bad data, settings, paths, full disk, unreadable
    raster); None for a bug, which keeps its traceback."""
    import errno

    if _is_user_error(exc):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS,
                                                  errno.EACCES, errno.EPERM, errno.ENOTDIR):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot write{where}: {exc.strerror or exc}"
    from geoidec.training.preflight import is_raster_error, raster_error_reason

    if is_raster_error(exc):  # rasterio/GDAL read errors raised while reading windows
        return (f"cannot read raster data: {raster_error_reason(exc)}; is the file truncated "
                "or corrupt?")
    return None


def is_usage_error(exc: Exception) -> bool:
    """An error of the command line or settings (exit status 2), not of data or runtime."""
    return isinstance(exc, UsageError | FileExistsError)


def _is_user_error(exc: Exception) -> bool:
    from geoidec.config import ConfigError

    names = {"DataError", "TaskSpecError", "WeightsError"}
    return (
        isinstance(exc, UsageError | ConfigError | FileExistsError | PermissionError)
        or any(t.__name__ in names for t in type(exc).__mro__)
    )
