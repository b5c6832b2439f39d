"""Disk cache of shared objects compiled from C-family source, for any device to reuse.

`fetch(key, produce, suffix)` is the cache itself, for any device's binaries.
`build(source, flags)` returns the path of a shared object compiled from `source` by
the C compiler ($CC, else gcc, clang or cc on PATH). An entry's key is the sha256 of
the source, the compiler (path and version), the flags and the host CPU (flags may
say -march=native, and such code must not run on another CPU sharing the directory).
Entries live in $LUBAN_CACHE_DIR, else $XDG_CACHE_HOME/luban, else ~/.cache/luban.

Writers hold a per-key file lock, compile into a temp file in the same directory,
fsync it and rename it into place, so several processes building one key compile it
once and a reader never sees a partial file. A sidecar holds the object's sha256: an
entry whose bytes do not match it (truncated, corrupted) is deleted and rebuilt.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


class CompileError(RuntimeError):
    pass


def cache_dir() -> Path:
    path = os.environ.get("LUBAN_CACHE_DIR")
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "luban")
    os.makedirs(path, exist_ok=True)
    return Path(path)


def compiler() -> tuple:
    """The command that runs the C compiler: $CC (which may carry a wrapper, like
    "ccache gcc"), else the first of gcc, clang, cc on PATH."""
    cc = shlex.split(os.environ.get("CC", ""))
    if cc:
        found = shutil.which(cc[0])
        if not found:
            raise CompileError(f"the C compiler named by $CC ({cc[0]!r}) was not found on PATH")
        return (found, *cc[1:])
    for name in ("gcc", "clang", "cc"):
        found = shutil.which(name)
        if found:
            return (found,)
    raise CompileError("no C compiler found: luban's cpu device needs gcc, clang or cc on PATH "
                       "(or $CC naming one)")


@functools.lru_cache(maxsize=None)
def _identity(cc: tuple) -> str:
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True, check=False).stdout
    return f"{os.path.realpath(cc[0])} {' '.join(cc[1:])}\n{version}"


@functools.lru_cache(maxsize=1)
def _host() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))})
    return "\n".join([platform.machine(), *wanted])


def compiler_version() -> str:
    """The C compiler's path and `--version` output (what a cache key depends on)."""
    return _identity(compiler())


def key(source: str, flags) -> str:
    h = hashlib.sha256()
    for part in (source, compiler_version(), "\0".join(flags), _host()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def build(source: str, flags, *, rebuild: bool = False) -> Path:
    """Path of the shared object for (source, flags), compiling it on a miss.
    rebuild=True discards the stored entry first (e.g. it failed to load)."""
    d = cache_dir()
    return fetch(key(source, flags), lambda: _compile(source, flags, d), ".so", rebuild=rebuild)


def fetch(k: str, produce, suffix: str, *, rebuild: bool = False) -> Path:
    """Path of the entry `k` (a hex digest naming everything its bytes depend on),
    calling produce() -> bytes on a miss; any device's compiled programs can live here."""
    d = cache_dir()
    entry, sidecar = d / f"{k}{suffix}", d / f"{k}.sha256"
    if not rebuild and _valid(entry, sidecar):
        return entry
    with _locked(d / f"{k}.lock"):
        if not rebuild and _valid(entry, sidecar):  # another process built it while we waited
            return entry
        for stale in (entry, sidecar):
            stale.unlink(missing_ok=True)
        data = produce()
        _write_atomic(sidecar, hashlib.sha256(data).hexdigest().encode(), d)
        _write_atomic(entry, data, d)
    return entry


def _valid(so: Path, sidecar: Path) -> bool:
    try:
        return hashlib.sha256(so.read_bytes()).hexdigest() == sidecar.read_text().strip()
    except OSError:
        return False


@contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _compile(source: str, flags, d: Path) -> bytes:
    """Compile `source` (read from stdin as C) and return the object's bytes."""
    cc = compiler()
    fd, out = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=d)
    os.close(fd)
    try:
        proc = subprocess.run([*cc, *flags, "-x", "c", "-", "-o", out], input=source,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CompileError(f"{' '.join(cc)} failed (exit {proc.returncode}) compiling kernel source "
                               f"with flags {' '.join(flags)}:\n{proc.stderr.strip()}")
        return Path(out).read_bytes()
    finally:
        if os.path.exists(out):  # a failed link deletes it (the CompileError must surface)
            os.unlink(out)


def _write_atomic(path: Path, data: bytes, d: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
