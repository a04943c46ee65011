"""MNIST loading for saccade-env: verified, cached, read-only arrays.

The MNIST database of handwritten digits is by Yann LeCun, Corinna Cortes and
Christopher J. C. Burges (http://yann.lecun.com/exdb/mnist/), made available
under the Creative Commons Attribution-Share Alike 3.0 license (CC BY-SA 3.0).
saccade-env ships the four original, unmodified IDX files, gzip-compressed, in
``saccade_env/_data/mnist/``.

Data is read from, in order of precedence: the ``data_dir`` argument, the
directory named by the ``SACCADE_ENV_MNIST_DIR`` environment variable, or the
bundled copy. Every file is decompressed and its size, md5 and IDX header are
checked before any array is returned; a bad file raises :class:`MNISTDataError`
(the file is never modified or deleted). Files missing from a user directory
are downloaded from the official mirrors; the bundled directory is never
written to.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import sys
import tempfile
import threading
import urllib.request
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["MNIST_DIR_ENV", "DEFAULT_MIRRORS", "MNISTDataError", "load_mnist", "parse_split"]

MNIST_DIR_ENV = "SACCADE_ENV_MNIST_DIR"
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_BUNDLED_DIR = Path(__file__).resolve().parent / "_data" / "mnist"
_DOWNLOAD_TIMEOUT_S = 30.0

# split -> (images file, labels file, number of examples)
_SPLITS: dict[str, tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
# file -> (md5 of the uncompressed bytes, uncompressed size in bytes)
_CHECKSUMS: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte.gz": ("6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train-labels-idx1-ubyte.gz": ("a25bea736e30d166cdddb491f175f624", 60008),
    "t10k-images-idx3-ubyte.gz": ("2646ac647ad5339dbf082846283269ea", 7840016),
    "t10k-labels-idx1-ubyte.gz": ("27ae3e4e09519cfbb04c329615203637", 10008),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049

_SLICE = re.compile(r"^(\w+)\[(\d*):(\d*)\]$")

_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
_cache_lock = threading.Lock()


class MNISTDataError(RuntimeError):
    """An MNIST file is missing, corrupted, or could not be downloaded."""


def _fix_hint(bundled: bool) -> str:
    if bundled:
        return (
            "the saccade-env installation is broken; reinstall it "
            "(pip install --force-reinstall saccade-env), or point data_dir / "
            f"{MNIST_DIR_ENV} at a directory holding the official MNIST files"
        )
    return (
        "delete it to download it again, or point data_dir / "
        f"{MNIST_DIR_ENV} at a directory holding the official MNIST files"
    )


def _check_payload(name: str, payload: bytes) -> tuple[bytes | None, str]:
    """Decompress ``payload`` and check it against ``_CHECKSUMS[name]``.

    Returns ``(raw_bytes, "")`` when valid, else ``(None, what_is_wrong)``.
    """
    try:
        raw = gzip.decompress(payload)
    except EOFError as exc:
        return None, f"it is a truncated gzip file ({exc})"
    except (OSError, zlib.error) as exc:
        return None, f"it is not a valid gzip file ({exc})"
    md5, size = _CHECKSUMS[name]
    if len(raw) != size:
        return None, f"its uncompressed size is {len(raw)} bytes, expected {size}"
    got = hashlib.md5(raw).hexdigest()
    if got != md5:
        return None, f"its uncompressed md5 is {got}, expected {md5} (corrupted file)"
    return raw, ""


def _read_verified(path: Path, bundled: bool) -> bytes:
    """Read ``path`` and return its verified, uncompressed bytes."""
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise MNISTDataError(f"cannot read MNIST file {path}: {exc}; {_fix_hint(bundled)}") from exc
    raw, problem = _check_payload(path.name, payload)
    if raw is None:
        raise MNISTDataError(f"bad MNIST file {path}: {problem}; {_fix_hint(bundled)}")
    return raw


def _parse_idx(raw: bytes, path: Path, count: int, images: bool, bundled: bool) -> np.ndarray:
    """Check the IDX header; return (count, 28, 28) uint8 images or (count,) uint8 labels."""
    magic, dims = (_IMAGES_MAGIC, (count, 28, 28)) if images else (_LABELS_MAGIC, (count,))
    header = struct.unpack(f">{1 + len(dims)}I", raw[: 4 * (1 + len(dims))])
    if header != (magic, *dims):
        raise MNISTDataError(
            f"bad MNIST file {path}: IDX header is {header}, expected {(magic, *dims)}; "
            f"{_fix_hint(bundled)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * len(header)).reshape(dims)


def _download(name: str, directory: Path, mirrors: Sequence[str]) -> None:
    """Fetch ``name`` from the first mirror that serves a valid copy; write it atomically."""
    failures: list[str] = []
    for mirror in mirrors:
        url = (mirror if mirror.endswith("/") else mirror + "/") + name
        print(f"saccade_env: downloading {name} from {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
        except Exception as exc:  # HTTPError, URLError, timeouts, resets, ...
            failures.append(f"{url}: {exc}")
            continue
        raw, problem = _check_payload(name, payload)
        if raw is None:
            failures.append(f"{url}: served a bad file: {problem}")
            continue
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, directory / name)
        except OSError as exc:
            raise MNISTDataError(
                f"cannot write MNIST file {directory / name}: {exc}; choose a writable "
                f"data_dir / {MNIST_DIR_ENV}"
            ) from exc
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        return
    tried = "\n".join(f"  - {f}" for f in failures) or "  (no mirrors given)"
    raise MNISTDataError(
        f"could not download MNIST file {name} into {directory}; tried:\n{tried}\n"
        f"Fix: download {name} yourself (e.g. from {DEFAULT_MIRRORS[0]}) and place it in "
        f"{directory}, or point data_dir / {MNIST_DIR_ENV} at a directory holding the "
        "official MNIST files."
    )


def _resolve_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """Return (directory, is_bundled)."""
    if data_dir is None:
        data_dir = os.environ.get(MNIST_DIR_ENV) or None
    if data_dir is None:
        return _BUNDLED_DIR, True
    return Path(data_dir).expanduser().resolve(), False


def load_mnist(
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split as read-only numpy arrays.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples), or a
            contiguous slice of one, ``"train[:55000]"`` (see :func:`parse_split`).
        data_dir: directory holding the four ``*-idx?-ubyte.gz`` files. Defaults
            to ``$SACCADE_ENV_MNIST_DIR`` if set, else the copy bundled with the
            package.
        download: download files missing from a user directory (never from
            the bundled one). If False, a missing file raises MNISTDataError.
        mirrors: base URLs tried in turn for downloads.

    Returns:
        ``(images, labels)``: images of shape (N, 28, 28), dtype uint8, values
        0..255; labels of shape (N,), dtype int64, values 0..9. Both arrays are
        read-only and cached per (directory, split) for the process lifetime (a
        slice is a view of the cached split).

    Raises:
        ValueError: unknown or malformed ``split``.
        MNISTDataError: a file is missing, corrupted or could not be downloaded.
    """
    split, start, stop = parse_split(split)
    directory, bundled = _resolve_dir(data_dir)
    key = (str(directory), split)
    with _cache_lock:
        if key in _cache:
            return _sliced(_cache[key], start, stop)
        images_name, labels_name, count = _SPLITS[split]
        for name in (images_name, labels_name):
            path = directory / name
            if path.is_file():
                continue
            if bundled:
                raise MNISTDataError(
                    f"bundled MNIST file {path} is missing: {_fix_hint(bundled=True)}"
                )
            if not download:
                raise MNISTDataError(
                    f"MNIST file {path} is missing and download=False; place the official "
                    f"file there, or call load_mnist(..., download=True)"
                )
            if isinstance(mirrors, str):
                mirrors = (mirrors,)
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MNISTDataError(
                    f"cannot create MNIST directory {directory}: {exc}; choose a writable "
                    f"data_dir / {MNIST_DIR_ENV}"
                ) from exc
            _download(name, directory, mirrors)
        images_path, labels_path = directory / images_name, directory / labels_name
        images = _parse_idx(_read_verified(images_path, bundled), images_path, count, True, bundled)
        labels = _parse_idx(_read_verified(labels_path, bundled), labels_path, count, False, bundled)
        labels = labels.astype(np.int64)
        images.flags.writeable = False
        labels.flags.writeable = False
        _cache[key] = (images, labels)
        return _sliced(_cache[key], start, stop)


def _sliced(arrays: tuple[np.ndarray, np.ndarray], start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The cached arrays themselves for a whole split, else read-only views of the slice."""
    images, labels = arrays
    if start == 0 and stop == len(labels):
        return images, labels
    return images[start:stop], labels[start:stop]


def parse_split(split: str) -> tuple[str, int, int]:
    """``(name, start, stop)`` of a split string: ``"train"``, ``"test"``, or a contiguous
    slice of one in Python's notation, ``"train[:55000]"`` / ``"train[55000:]"`` (e.g. to hold
    out the last 5,000 training digits for validation; negative indices are not accepted).

    Raises:
        ValueError: an unknown name, a malformed or empty slice, or bounds past the split's size.
    """
    if not isinstance(split, str):
        raise ValueError(f"split must be a string such as 'train', 'test' or 'train[:55000]', got {split!r}")
    m = _SLICE.match(split)
    name = m.group(1) if m else split
    if name not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, optionally sliced as in 'train[:55000]' "
                         f"or 'train[55000:]', got {split!r}")
    count = _SPLITS[name][2]
    start = int(m.group(2)) if m and m.group(2) else 0
    stop = int(m.group(3)) if m and m.group(3) else count
    if not 0 <= start < stop <= count:
        raise ValueError(f"split {split!r} selects no digits or goes past the {count} of {name!r}: "
                         f"use 0 <= start < stop <= {count}, e.g. '{name}[:{count * 11 // 12}]'")
    return name, start, stop
