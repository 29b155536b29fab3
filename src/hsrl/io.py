"""File-system helpers shared by every step: atomic outputs, hashes, safe JSON and arrays.

Outputs are written to a temporary sibling and renamed into place, so a failure never leaves
a half-written file or folder behind. Arrays are stored as ``.npz`` and read with
``allow_pickle=False``; nothing a user hands us is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hsrl.errors import DataError, HsrlError

try:  # POSIX: advisory locks that end with the process holding them
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: nothing is locked
    fcntl = None  # type: ignore[assignment]

# Lock files this process holds (resolved paths), so that a reentrant take (a command that
# locks its output and then writes it through atomic_output_dir) does not lock itself out.
_HELD_LOCKS: set[Path] = set()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(
    path: str | Path, what: str | Path, *, reentrant: bool = False, remove: bool = False
) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` or fail at once, naming ``what``.

    The lock is the kernel's (``flock``): it ends with the process holding it, so a lock left
    by a killed process is taken over by the next one, and the file itself is harmless. A
    second take in the same process fails too, unless ``reentrant`` (then it is a no-op while
    the first holds). With ``remove`` the file is deleted on release; a taker that locked a
    file deleted meanwhile sees it and takes the new one. Without ``fcntl`` (not POSIX)
    nothing is locked.
    """
    path = Path(path)
    key = path.resolve()
    if fcntl is None or (reentrant and key in _HELD_LOCKS):
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise HsrlError(
                f"{what}: in use by another hsrl process (its lock {path} is held)"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder before us removed this file on release: take the new one
    try:
        _HELD_LOCKS.add(key)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(key)
            if remove:
                with contextlib.suppress(OSError):
                    path.unlink()
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def output_lock(
    out: str | Path, *, reentrant: bool = False
) -> contextlib.AbstractContextManager[None]:
    """Lock the output folder ``out`` for this writer (:func:`file_lock` on ``.NAME.lock``
    beside it, so that ``out`` need not exist yet, removed again on release); a second writer
    fails at once."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return file_lock(out.parent / f".{out.name}.lock", out, reentrant=reentrant, remove=True)


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` only if the block succeeds.

    An existing ``out`` is an error unless ``overwrite`` is set; then it is replaced only after
    the new content is complete. ``out`` is locked while the block runs (:func:`output_lock`).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise HsrlError(f"{out}: already exists (choose another --out or pass --overwrite)")
    if out.exists() and not out.is_dir():
        raise HsrlError(f"{out}: exists and is not a folder")
    with output_lock(out, reentrant=True):
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out, "tmp"), dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: follow the user's umask instead
        try:
            yield tmp
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=temp_prefix(out, "old"), dir=out.parent))
                os.replace(out, old / "content")
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        remove_stale_temporaries(out)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_prefix(out: str | Path, kind: str) -> str:
    """Name prefix of a temporary sibling of ``out``: ``.NAME.KIND-PID-``. The writer's process
    id in the name lets a later writer tell a temporary left by a killed process from one in
    use (:func:`remove_stale_temporaries`)."""
    return f".{Path(out).name}.{kind}-{os.getpid()}-"


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Delete the temporary siblings of ``out`` left by killed writers (their process is gone),
    saying so on stderr; returns what was removed."""
    out = Path(out)
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old|raw|replaced)-(\d+)(-.*)?")
    removed = []
    with contextlib.suppress(OSError):
        for entry in out.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or _process_alive(int(match.group(2))):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry)
            print(f"hsrl: removed {entry}, left by an interrupted earlier write", file=sys.stderr)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or not ours to judge: leave it
    return True


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path, "tmp"), dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: follow the user's umask instead
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    remove_stale_temporaries(path)


def json_text(obj: Any, **options: Any) -> str:
    """Strict JSON: NaN and infinities (which strict parsers reject) become null."""
    return json.dumps(_finite_or_null(obj), allow_nan=False, **options)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(value) for value in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json_text(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc
    except RecursionError:
        raise DataError(path, "JSON nested too deeply") from None


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` (fast to load), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path, "tmp"), suffix=".npz", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_arrays(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an ``.npz`` without pickle; a missing or damaged file or key is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(path, f"not a readable .npz array file ({exc})") from exc
    missing = [key for key in required if key not in arrays]
    if missing:
        raise DataError(path, f"missing array(s) {', '.join(missing)}")
    return arrays
