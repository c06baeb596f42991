"""Run-file I/O: atomic writes (with the test-only $PKD_FAULT fault injection), bounded reads that refuse
anything but a regular file of sane size and depth, tensor files loaded weights-only, and text made safe to
print. Every byte pkd writes into or reads from a run directory goes through these functions.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import signal
import stat
from pathlib import Path
from typing import Any, Iterator

from pkd.runs.files import MAX_JSON_BYTES, MAX_JSON_DEPTH, RunError

FAULT_ENV = "PKD_FAULT"  # test-only fault injection, read in _fault() alone; see there

# ----------------------------------------------------------------------------------------------- atomic writes

_fault_counts: dict[str, int] = {}


def _fault(path: Path, fh: Any, data: bytes) -> None:
    """Test-only fault injection, the one place that reads $PKD_FAULT = "<action>:<file name>:<n>".

    On the n-th write (counted per process) of a file called <file name>: action "kill" writes the first half of
    `data` to the open file `fh`, flushes it and SIGKILLs this process (a crash in the middle of a write);
    action "erofs" raises OSError(EROFS) as a read-only disk would. Unset (always, outside tests): no effect.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    action, name, n = (spec.split(":") + ["", "", ""])[:3]
    if name != path.name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if str(_fault_counts[name]) != n:
        return
    if action == "kill":
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "erofs":
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


RUN_FIX = "free disk space or make the run directory writable, then continue with `python -m pkd train --resume <run>`"


def write_error(path: Path, exc: OSError, fix: str = RUN_FIX) -> OSError:
    """The same kind of OSError, with a one-line message naming the file and the fix."""
    reason = exc.strerror or exc.__class__.__name__
    return type(exc)(exc.errno, f"cannot write {path} ({reason}); {fix}")


def atomic_write_bytes(path: Path, data: bytes, fix: str = RUN_FIX, durable: bool = True) -> None:
    """Write `data` to `path` via a temp file in the same folder + fsync + os.replace (never half-written; a link
    planted at `path` is replaced, never followed). With durable=False the fsync is skipped: the replace is still
    atomic for every reader and survives the writer being killed (the data is in the OS's cache), only a power
    loss may keep the previous file; for the live heartbeat a training loop writes every second.

    Raises:
        OSError: the disk refused the write (full, read-only); the message names `path`, which is unchanged, and
            `fix`, what to do.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:  # exclusive: never follows a link planted at the temp name
            _fault(path, fh, data)
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc, fix) from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def atomic_write_json(path: Path, obj: Any, durable: bool = True) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode(), durable=durable)


def append_line(path: Path, line: bytes) -> None:
    """Append one line to `path` in one write call (so concurrent readers never see half a line they keep)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "ab") as fh:
            _fault(path, fh, line)
            fh.write(line)
            fh.flush()
    except OSError as exc:
        raise write_error(path, exc) from None


def save_tensors(path: Path, obj: dict) -> None:
    """Atomically save a dict of tensors and primitives (loadable with weights_only=True)."""
    import torch  # here, not at the top: reading a run's records (the app's first page) needs no torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: Path) -> dict:
    """Load a file written by save_tensors with weights_only=True; RunError names the file if it is bad."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad or hostile file
        raise RunError(f"{path}: not a pkd weights file ({exc.__class__.__name__}); it was not loaded") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------------------------- bounded reads

def open_regular(path: Path) -> io.BufferedReader:
    """Open a run file for binary reading; RunError unless it is a regular file (a FIFO or device would block or
    never end). Opened non-blocking and checked on the open descriptor, so a swapped-in FIFO cannot hang us."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int, what: str = "a pkd run file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes (never more is read); RunError names it otherwise."""
    with open_regular(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise RunError(f"{path}: file is over {limit:,} bytes, too large to be {what}")
    return data


def read_json(path: Path) -> Any:
    """Parse a JSON file of a run; RunError names the file when it is not a regular file, huge, corrupt or nested
    deeper than MAX_JSON_DEPTH."""
    path = Path(path)
    data = read_bounded(path, MAX_JSON_BYTES)
    try:
        obj = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise RunError(f"{path}: JSON nested too deeply to be a pkd run file") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise RunError(f"{path}: corrupt JSON ({exc.__class__.__name__})") from None
    if too_deep(obj, MAX_JSON_DEPTH):
        raise RunError(f"{path}: JSON nested over {MAX_JSON_DEPTH} levels deep, too deep to be a pkd run file")
    return obj


def too_deep(obj: Any, limit: int) -> bool:
    """True when lists and mappings nest more than `limit` levels (walked without recursion, in O(limit) memory)."""
    stack = [iter([obj])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, (list, dict)):
                if len(stack) > limit:
                    return True
                stack.append(iter(item.values() if isinstance(item, dict) else item))
                break
        else:
            stack.pop()
    return False


def read_lines(fh: io.BufferedReader, limit: int) -> Iterator[bytes | None]:
    """Yield each line of a binary file, or None for a line over `limit` bytes (read past in chunks, never held)."""
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = fh.readline(1 << 16)
        yield None


def printable(text: Any, limit: int = 200) -> str:
    """`text` safe to print on one terminal line: control characters (newline, tab, ANSI escapes) and undecodable
    bytes escaped as repr would, cut to `limit` characters."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."
