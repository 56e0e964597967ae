"""The one way gpubench writes a file: results, pages, plots, summaries, JUnit XML.

A write is atomic (readers see the old file or the whole new one), goes through a symbolic
link to the file it names (the link stays a link), refuses a path that is something other
than a regular file (a device node, a FIFO, a socket, a folder), and never loses what it was
asked to write: when the write fails, the content is kept in the temporary folder and the
error names both paths.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import time
from pathlib import Path


class WriteError(OSError):
    """A file could not be written; the message is one line: the path, why, and where the
    content was kept instead (:attr:`kept`, ``None`` when keeping it failed too)."""

    def __init__(self, message: str, kept: Path | None = None) -> None:
        super().__init__(message)
        self.kept = kept

    def __str__(self) -> str:
        return str(self.args[0])


def final_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` lands in: the end of its chain of symbolic links."""
    return Path(os.path.realpath(path))


def refusal(path: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written at ``path`` (it exists as something other than a regular
    file, or its folder cannot be made or written), or ``None``. Makes the missing folders."""
    target = final_target(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return exc.strerror or str(exc)
    if mode is not None and not stat.S_ISREG(mode):
        return f"{_kind(mode)}, not a regular file"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not os.access(target.parent, os.W_OK | os.X_OK):
        return f"{target.parent} is not writable"
    return None


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "a special file")


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` atomically; returns ``path``.

    Raises :class:`WriteError` (one line) when the path is refused or the write fails; the
    content is then kept in :func:`tempfile.gettempdir` under a name the message gives.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    reason = refusal(path)
    if reason is None:
        try:
            _replace(final_target(path), data)
            return Path(path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
    raise _failed(Path(path), reason, data)


def _replace(target: Path, data: bytes) -> None:
    """Write ``data`` beside ``target`` and rename it onto ``target``."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            # Made with the umask's permissions (not mkstemp's 0600), as a plain open would.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _failed(path: Path, reason: str, data: bytes) -> WriteError:
    kept = keep(path, data)
    where = f"is kept in {kept}" if kept is not None else "could not be kept either"
    return WriteError(f"cannot write {path}: {reason}; the content {where}", kept)


def keep(path: Path, data: bytes) -> Path | None:
    """Save ``data`` meant for ``path`` in the temporary folder; its path, or ``None``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    try:
        fd, name = tempfile.mkstemp(prefix=f"gpubench-{path.stem}-{stamp}-", suffix=path.suffix)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError:
        Path(name).unlink(missing_ok=True)
        return None
    return Path(name)
