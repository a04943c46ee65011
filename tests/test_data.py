"""Tests for saccade_env.data (MNIST loading, verification, download, caching)."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from saccade_env import data
from saccade_env.data import MNIST_DIR_ENV, MNISTDataError, load_mnist

BUNDLED = Path(data.__file__).resolve().parent / "_data" / "mnist"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every test independent of the caller's SACCADE_ENV_MNIST_DIR."""
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)


def _corrupt(gz_bytes: bytes, index: int = 100) -> bytes:
    """Flip one byte of the uncompressed content and re-gzip."""
    raw = bytearray(gzip.decompress(gz_bytes))
    raw[index] ^= 0xFF
    return gzip.compress(bytes(raw), compresslevel=1)


def _copy_test_split(dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in (TEST_IMAGES, TEST_LABELS):
        shutil.copyfile(BUNDLED / name, dst / name)


def _serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def mirror(tmp_path: Path):
    """A local HTTP mirror (127.0.0.1 only) serving copies of the bundled test split."""
    root = tmp_path / "mirror"
    _copy_test_split(root)
    server, thread, url = _serve(root)
    yield root, url
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# --- bundled data -----------------------------------------------------------


@pytest.mark.parametrize("split,count,first_label", [("train", 60000, 5), ("test", 10000, 7)])
def test_bundled_split(split: str, count: int, first_label: int) -> None:
    images, labels = load_mnist(split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9
    assert set(np.unique(labels).tolist()) == set(range(10))
    assert np.bincount(labels).min() > count // 20
    assert labels[0] == first_label
    assert images.max() == 255 and images.min() == 0
    assert 20 < images.mean() < 50  # mostly black background, some ink


def test_cached_and_read_only() -> None:
    images, labels = load_mnist("test")
    again = load_mnist("test")
    assert again[0] is images and again[1] is labels
    assert not images.flags.writeable and not labels.flags.writeable
    with pytest.raises(ValueError):
        images[0, 0, 0] = 1
    with pytest.raises(ValueError):
        labels[0] = 1


@pytest.mark.parametrize("split", ["val", "TRAIN", "", "t10k"])
def test_bad_split(split: str) -> None:
    with pytest.raises(ValueError, match="train.*test|test.*train"):
        load_mnist(split)


@pytest.mark.parametrize("split", ["train[:0]", "train[5:3]", "train[:60001]", "train[-5:]", "test[:]x", "val[:10]"])
def test_bad_split_slice(split: str) -> None:
    with pytest.raises(ValueError, match=r"train\[:55000\]"):  # the error shows the notation
        load_mnist(split)


def test_split_slices_are_views_of_the_split() -> None:
    """"train[:55000]" and "train[55000:]" partition the training digits; an environment
    on a slice draws only from it."""
    images, labels = load_mnist("train")
    fit, fit_labels = load_mnist("train[:55000]")
    held, held_labels = load_mnist("train[55000:]")
    assert fit.shape == (55000, 28, 28) and held.shape == (5000, 28, 28) and held_labels.shape == (5000,)
    np.testing.assert_array_equal(np.concatenate([fit, held]), images)
    np.testing.assert_array_equal(np.concatenate([fit_labels, held_labels]), labels)
    assert not held.flags.writeable
    assert load_mnist("test[100:200]")[0].shape == (100, 28, 28) and load_mnist("train[:]")[0].shape[0] == 60000
    from saccade_env.scene import SceneConfig, SceneSampler
    sampler = SceneSampler(SceneConfig(size=28, placement="center", noise=0.0, mask=False), split="train[59990:]")
    np.testing.assert_array_equal(sampler.digits.numpy(), images[59990:])


# --- verification of user files ---------------------------------------------


@pytest.mark.parametrize("kind", ["truncated", "corrupted", "wrong_size", "not_gzip"])
@pytest.mark.parametrize("name", [TEST_IMAGES, TEST_LABELS])
def test_bad_file_raises_and_is_untouched(tmp_path: Path, kind: str, name: str) -> None:
    _copy_test_split(tmp_path)
    good = (BUNDLED / name).read_bytes()
    makers = {
        "truncated": lambda: good[: len(good) // 2],
        "corrupted": lambda: _corrupt(good),
        "wrong_size": lambda: gzip.compress(gzip.decompress(good) + b"\x00", compresslevel=1),
        "not_gzip": lambda: b"<html>not found</html>",
    }
    bad = makers[kind]()
    (tmp_path / name).write_bytes(bad)
    with pytest.raises(MNISTDataError) as info:
        load_mnist("test", data_dir=tmp_path, mirrors=())
    msg = str(info.value)
    assert str(tmp_path / name) in msg
    assert "delete it" in msg and MNIST_DIR_ENV in msg
    assert (tmp_path / name).read_bytes() == bad  # never modified or deleted
    # Nothing is cached for a failing directory: still fails on a second call.
    with pytest.raises(MNISTDataError):
        load_mnist("test", data_dir=tmp_path, mirrors=())


def test_user_dir_with_good_files(tmp_path: Path) -> None:
    _copy_test_split(tmp_path)
    images, labels = load_mnist("test", data_dir=str(tmp_path), download=False)
    ref_images, ref_labels = load_mnist("test")
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)


def test_download_false_missing(tmp_path: Path) -> None:
    (tmp_path / TEST_LABELS).write_bytes((BUNDLED / TEST_LABELS).read_bytes())
    with pytest.raises(MNISTDataError, match=TEST_IMAGES):
        load_mnist("test", data_dir=tmp_path, download=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEST_LABELS]


def test_bundled_missing_says_reinstall(tmp_path: Path, monkeypatch, mirror) -> None:
    _, url = mirror
    fake_bundle = tmp_path / "bundle"
    fake_bundle.mkdir()
    monkeypatch.setattr(data, "_BUNDLED_DIR", fake_bundle)
    with pytest.raises(MNISTDataError, match="reinstall") as info:
        load_mnist("test", mirrors=(url,))
    assert TEST_IMAGES in str(info.value)
    assert list(fake_bundle.iterdir()) == []  # never downloads into the bundled dir


# --- environment variable ----------------------------------------------------


def test_env_var_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_mnist("test")  # populate the cache for the bundled directory first
    env_dir = tmp_path / "env"
    _copy_test_split(env_dir)
    bad = _corrupt((BUNDLED / TEST_LABELS).read_bytes())
    (env_dir / TEST_LABELS).write_bytes(bad)
    monkeypatch.setenv(MNIST_DIR_ENV, str(env_dir))
    with pytest.raises(MNISTDataError, match=TEST_LABELS) as info:
        load_mnist("test")
    assert str(env_dir / TEST_LABELS) in str(info.value)
    # An explicit data_dir takes precedence over the environment variable.
    assert load_mnist("test", data_dir=data._BUNDLED_DIR)[1][0] == 7


def test_env_var_download_target(tmp_path: Path, monkeypatch, mirror) -> None:
    _, url = mirror
    env_dir = tmp_path / "env" / "nested"
    monkeypatch.setenv(MNIST_DIR_ENV, str(env_dir))
    images, labels = load_mnist("test", mirrors=(url,))
    assert (env_dir / TEST_IMAGES).is_file() and (env_dir / TEST_LABELS).is_file()
    np.testing.assert_array_equal(labels, load_mnist("test", data_dir=BUNDLED)[1])


# --- downloads (local mirror on 127.0.0.1 only) ------------------------------


def test_download_from_local_mirror(tmp_path: Path, mirror, capsys) -> None:
    _, url = mirror
    target = tmp_path / "dl"
    target.mkdir()
    images, labels = load_mnist("test", data_dir=target, mirrors=(url,))
    assert sorted(p.name for p in target.iterdir()) == sorted([TEST_IMAGES, TEST_LABELS])
    for name in (TEST_IMAGES, TEST_LABELS):
        assert (target / name).read_bytes() == (BUNDLED / name).read_bytes()
    ref_images, ref_labels = load_mnist("test")
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
    err = capsys.readouterr().err
    assert f"{url}{TEST_IMAGES}" in err and capsys.readouterr().out == ""


def test_download_only_missing_file(tmp_path: Path, mirror) -> None:
    root, url = mirror
    target = tmp_path / "dl"
    target.mkdir()
    shutil.copyfile(BUNDLED / TEST_IMAGES, target / TEST_IMAGES)
    (root / TEST_IMAGES).unlink()  # the mirror cannot serve the images file
    _, labels = load_mnist("test", data_dir=target, mirrors=url.rstrip("/"))
    assert labels[0] == 7 and (target / TEST_LABELS).is_file()


def test_download_corrupted_mirror(tmp_path: Path, mirror) -> None:
    root, url = mirror
    (root / TEST_IMAGES).write_bytes(_corrupt((root / TEST_IMAGES).read_bytes()))
    target = tmp_path / "dl"
    target.mkdir()
    with pytest.raises(MNISTDataError) as info:
        load_mnist("test", data_dir=target, mirrors=(url,))
    msg = str(info.value)
    assert TEST_IMAGES in msg and url in msg and "md5" in msg
    assert list(target.iterdir()) == []  # no partial or temporary file left


def test_download_all_mirrors_fail(tmp_path: Path, closed_port_url: str, mirror) -> None:
    root, url = mirror
    (root / TEST_IMAGES).unlink()  # 404 on the second mirror
    target = tmp_path / "dl"
    with pytest.raises(MNISTDataError) as info:
        load_mnist("test", data_dir=target, mirrors=(closed_port_url, url))
    msg = str(info.value)
    assert closed_port_url in msg and url in msg and "404" in msg
    assert "place it in" in msg
    assert list(target.iterdir()) == []


def test_unreachable_mirror_then_good(tmp_path: Path, closed_port_url: str, mirror) -> None:
    _, url = mirror
    target = tmp_path / "dl"
    images, labels = load_mnist("test", data_dir=target, mirrors=(closed_port_url, url))
    assert images.shape == (10000, 28, 28) and labels[0] == 7
    assert (target / TEST_IMAGES).read_bytes() == (BUNDLED / TEST_IMAGES).read_bytes()
