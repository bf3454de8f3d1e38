"""What the policy artifact and the checkpoints share on disk: one atomic file write, one checksum.

`write_atomically` is how a single file of a run directory is replaced
(``policy.msgpack``); `checksums` is the CRC32 that both the policy artifact
and the checkpoint metadata record, so damage found later (a truncated copy,
a flipped bit on disk) is told apart from a valid file on read.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import zlib
from typing import Any

import jax
import numpy as np

PathLike = str | os.PathLike


def checksums(tree: Any) -> list[int]:
    """CRC32 (zlib) of the bytes of every leaf of ``tree``, in `jax.tree.leaves` order.

    An array leaf is read as numpy holds it in C order (its dtype's native bytes;
    a 0-d array as one element, a zero-size one as no bytes). A ``bytes`` leaf is
    taken as it is, so ``checksums(blob) == [zlib.crc32(blob)]`` for one
    serialised blob. The values are stored in files: changing how a leaf is read
    would make every existing checkpoint and policy artifact look damaged.
    """
    return [zlib.crc32(_leaf_bytes(x)) for x in jax.tree.leaves(tree)]


def _leaf_bytes(x: Any) -> Any:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return x
    return np.ascontiguousarray(x).reshape(-1).view(np.uint8)


def write_atomically(path: PathLike, data: bytes) -> pathlib.Path:
    """Replace ``path`` by a file holding ``data``: temp file beside it, fsync, os.replace, fsync the directory.

    Readers see the old file or the complete new one, never a part; a crash
    leaves at most a hidden ``.NAME.*.tmp`` beside it that nothing reads, and a
    failed write (an exception) removes its temp file. The file gets the mode
    ``open(path, "wb")`` would give a new file (0666 less the umask), not
    `tempfile.mkstemp`'s 0600, so it is as readable as the run's other files.
    Returns ``path``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _create_temp(path: pathlib.Path) -> tuple[pathlib.Path, int]:
    """A new, empty temp file in ``path``'s directory (so os.replace is a rename within one file system)."""
    # os.open with mode 0o666 lets the kernel apply the umask (and a directory's default ACL) exactly as
    # open() does; O_EXCL makes the name ours alone.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make the rename itself durable; not every platform can open or fsync a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["checksums", "write_atomically"]
