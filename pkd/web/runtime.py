"""onnxruntime-web for exported pages: the three files a page needs, pinned, checked, cached.

A page made by `pkd export RUN --web` runs its students with onnxruntime-web's single-threaded WebAssembly build
(no cross-origin isolation needed, so it works from file:// and from any static host). It needs three files of the
npm package `onnxruntime-web` (`RUNTIME_FILES`, from the package's `dist/`), obtained in this order:

1. `$PKD_ORT_WEB` (or the `source` argument): a folder holding the three files (`node_modules/onnxruntime-web/dist`
   after `npm install onnxruntime-web@1.31.1`) or the package's tarball (`npm pack onnxruntime-web@1.31.1`, or the
   .tgz downloaded by hand from `TARBALL_URL`): for users without network on the exporting machine.
2. The cache, `$PKD_CACHE_DIR/onnxruntime-web-<version>/` (default `~/.cache/pkd`).
3. A download of the tarball from registry.npmjs.org (35 MB, once), checked against the registry's published
   sha512 integrity pinned here; only the three files are kept, in the cache.

Every file is checked against its sha256 pinned here, whatever its source. `python -m pkd.web.runtime` fills the
cache (CI runs it before the tests; they never download).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from pkd.cache import cache_root

ORT_WEB_VERSION = "1.31.1"  # the same version as the onnxruntime wheel the export is checked in (requirements.txt)
TARBALL_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
TARBALL_INTEGRITY = ("sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw"
                     "==")  # the registry's "dist.integrity" of that version
RUNTIME_FILES = {  # dist/ file -> sha256
    "ort.wasm.min.js": "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443",  # the API (classic script)
    "ort-wasm-simd-threaded.mjs": "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",  # wasm glue
    "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",  # the runtime
}
SOURCE_ENV = "PKD_ORT_WEB"
DOWNLOAD_TIMEOUT = 120  # seconds
HINT = (f"set {SOURCE_ENV} to a folder with onnxruntime-web {ORT_WEB_VERSION}'s dist/ files "
        f"(npm install onnxruntime-web@{ORT_WEB_VERSION}) or to its tarball ({TARBALL_URL})")


def cache_dir() -> Path:
    """Where the checked runtime files are kept: $PKD_CACHE_DIR/onnxruntime-web-<version>/."""
    return cache_root() / f"onnxruntime-web-{ORT_WEB_VERSION}"


def _checked(files: dict[str, bytes], where: str) -> dict[str, bytes]:
    """The files if every one is there with its pinned sha256, else ValueError naming the first bad one."""
    for name, digest in RUNTIME_FILES.items():
        if name not in files:
            raise ValueError(f"onnxruntime-web: {where} has no {name}; {HINT}")
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise ValueError(f"onnxruntime-web: {name} in {where} is not version {ORT_WEB_VERSION}'s file (sha256 "
                             f"differs); {HINT}")
    return files


def _from_tarball(data: bytes, where: str) -> dict[str, bytes]:
    """The runtime files from the npm tarball's package/dist/ (nothing else is read or written)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            files = {}
            for name in RUNTIME_FILES:
                member = tar.getmember(f"package/dist/{name}")
                if not member.isfile():
                    raise KeyError(name)
                files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise ValueError(f"onnxruntime-web: {where} is not the package's tarball ({exc}); {HINT}") from None
    return _checked(files, where)


def _from_source(source: Path) -> dict[str, bytes]:
    """The runtime files from a folder (dist/ or the package folder above it) or a tarball."""
    if source.is_dir():
        folder = source / "dist" if (source / "dist" / "ort.wasm.min.js").is_file() else source
        return _checked({name: (folder / name).read_bytes() for name in RUNTIME_FILES
                         if (folder / name).is_file()}, str(folder))
    if source.is_file():
        return _from_tarball(source.read_bytes(), str(source))
    raise ValueError(f"onnxruntime-web: {source} is neither a folder nor a file; {HINT}")


def cached_files() -> dict[str, bytes] | None:
    """The runtime files from the cache when all are there and intact, else None."""
    folder = cache_dir()
    try:
        return _checked({name: (folder / name).read_bytes() for name in RUNTIME_FILES}, str(folder))
    except (OSError, ValueError):
        return None


def _download() -> dict[str, bytes]:
    """The tarball from the npm registry, checked against its pinned sha512 integrity."""
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=DOWNLOAD_TIMEOUT) as response:
            data = response.read()
    except OSError as exc:
        raise ValueError(f"onnxruntime-web {ORT_WEB_VERSION} is not in the cache ({cache_dir()}) and downloading "
                         f"it failed ({exc}); {HINT}") from None
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != TARBALL_INTEGRITY:
        raise ValueError(f"onnxruntime-web: the download from {TARBALL_URL} does not match its pinned integrity; "
                         f"{HINT}")
    return _from_tarball(data, TARBALL_URL)


def _store(files: dict[str, bytes]) -> None:
    """Keep the checked files in the cache (each written to a temp file and renamed: never half-written)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, folder / name)


def runtime_files(source: str | os.PathLike | None = None, download: bool = True) -> dict[str, bytes]:
    """The three checked runtime files {dist name: bytes}: from `source` / $PKD_ORT_WEB, the cache or a download.

    Raises:
        ValueError: one line naming what is missing or wrong and how to provide the files.
    """
    given = source or os.environ.get(SOURCE_ENV)
    if given:
        return _from_source(Path(given).expanduser())
    files = cached_files()
    if files is not None:
        return files
    if not download:
        raise ValueError(f"onnxruntime-web {ORT_WEB_VERSION} is not in the cache ({cache_dir()}); run "
                         f"`python -m pkd.web.runtime` with network, or {HINT}")
    files = _download()
    try:
        _store(files)
    except OSError:
        pass  # a read-only cache: the page is still made, the next export downloads again
    return files


if __name__ == "__main__":  # `python -m pkd.web.runtime`: fill the cache (CI, before the tests)
    try:
        runtime_files()
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    print(f"onnxruntime-web {ORT_WEB_VERSION}: {cache_dir()}")
