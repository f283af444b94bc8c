"""What jdrl accepts as a file to read, and how text files are read.

Every reader (images, checkpoints, configs, model folders, CSV pair lists) asks
:func:`file_problem` first, so a missing file, a folder, a named pipe (which would block
the reader forever), a device such as ``/dev/zero`` (which never ends), a socket, a
symlink loop or a name the file system refuses is reported as what it is, with the
path, instead of "not found" or a hang. :func:`read_text` adds a size limit and the
encodings people's tools write (UTF-8 with or without a byte-order mark, UTF-16 with
one) and refuses binary data by name.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: the byte-order marks of the encodings :func:`read_text` accepts besides plain UTF-8
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
NAME_MAX = 255  # bytes per path component on the common file systems


def file_problem(path: str | os.PathLike, *, allow_empty: bool = False) -> str | None:
    """Why ``path`` is not a regular file jdrl can read (``None`` when it is one)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return _stat_problem(Path(path), error)
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(info.st_mode):
        return "is a named pipe (FIFO), not a file"
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(info.st_mode):
        return "is a socket, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size == 0 and not allow_empty:
        return "is empty (0 bytes)"
    return None


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a folder jdrl can list (``None`` when it is one)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such folder"
    except OSError as error:
        return _stat_problem(Path(path), error)
    return None if stat.S_ISDIR(info.st_mode) else "is not a folder"


def _stat_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symbolic link that loops"
    if error.errno == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
        return f"the name is too long for the file system ({longest} bytes in one part; at most {NAME_MAX})"
    if error.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if error.errno == errno.EACCES:
        return "permission denied"
    return f"cannot be read ({error.strerror or error})"


def read_text(path: str | os.PathLike, max_bytes: int, what: str = "text file") -> str:
    """The text of a small file: UTF-8 (a byte-order mark allowed) or UTF-16 with its mark.

    Raises ``ValueError`` with the reason (not a file, too large, binary, not decodable); callers
    wrap it in their own error type with the path.
    """
    problem = file_problem(path, allow_empty=True)
    if problem:
        raise ValueError(problem)
    size = os.stat(path).st_size
    if size > max_bytes:
        raise ValueError(f"{size:,} bytes is too large for a {what} (at most {max_bytes:,})")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise ValueError(f"larger than {max_bytes:,} bytes, too large for a {what}")
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise ValueError(f"not a {what} (neither UTF-8 nor UTF-16 text)") from None
    if "\x00" in text:
        raise ValueError(f"not a {what}: it holds binary data (NUL bytes)")
    return text


#: how text jdrl writes (reports, logs, configs) encodes a file name that is not valid UTF-8: as a visible
#: ``\udcXX`` escape, instead of failing the whole report at the last step
WRITE_ERRORS = "backslashreplace"


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 (undecodable file names escaped, :data:`WRITE_ERRORS`)."""
    Path(path).write_text(text, encoding="utf-8", errors=WRITE_ERRORS)
    return Path(path)


def real_path(path: str | os.PathLike) -> Path:
    """The absolute path with links followed, for comparing locations; a symlink loop stays as it is (where
    ``Path.resolve`` raises ``RuntimeError``), so the reader that opens it names the loop."""
    return Path(os.path.realpath(os.fspath(path)))
