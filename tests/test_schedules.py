"""Epoch schedules: exact contents, sizes and validation."""
import numpy as np
import pytest

from ibtoolkit.schedules import epoch_schedule


def test_all_and_every_exact_contents():
    np.testing.assert_array_equal(epoch_schedule("all", 4), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(epoch_schedule("every:3", 10), [0, 3, 6, 9, 10])
    np.testing.assert_array_equal(epoch_schedule("every:5", 20), [0, 5, 10, 15, 20])
    np.testing.assert_array_equal(epoch_schedule("every:1", 3), [0, 1, 2, 3])


def test_log_small_cases_exact():
    # greedy geometric placement from 1 to 10 with 3 points to place: 2, 4, 10
    np.testing.assert_array_equal(epoch_schedule("log", 10, n_points=5), [0, 1, 2, 4, 10])
    np.testing.assert_array_equal(epoch_schedule("log", 3, n_points=100), [0, 1, 2, 3])  # capped at all epochs
    np.testing.assert_array_equal(epoch_schedule("log", 0), [0])
    np.testing.assert_array_equal(epoch_schedule("log", 1), [0, 1])
    np.testing.assert_array_equal(epoch_schedule("log", 1000, n_points=2), [0, 1, 1000])  # 0, 1, last always


@pytest.mark.parametrize("n_epochs,n_points", [(8000, 270), (8000, 100), (500, 50), (37, 10), (10000, 2000)])
def test_log_size_endpoints_and_spacing(n_epochs, n_points):
    s = epoch_schedule("log", n_epochs, n_points=n_points)
    assert s.dtype == np.int64
    assert s.size == n_points
    assert s[0] == 0 and s[1] == 1 and s[-1] == n_epochs
    assert np.all(np.diff(s) > 0)
    # log-spaced: once steps exceed 1, consecutive ratios stay close to the overall geometric ratio
    tail = s[s >= 50]
    if tail.size > 3:
        ratios = tail[1:] / tail[:-1]
        expected = (n_epochs / 1.0) ** (1.0 / (n_points - 2))
        assert ratios.max() < expected * 1.05 + 0.03
        assert ratios.min() > 1.0


def test_dense_then_log_is_the_bnn_schedule():
    s = epoch_schedule("dense:100,log", 8000, n_points=270)
    np.testing.assert_array_equal(s[:101], np.arange(101))
    assert s.size == 270 and s[-1] == 8000 and np.all(np.diff(s) > 0)
    np.testing.assert_array_equal(epoch_schedule("dense:5,log", 100, n_points=10), [0, 1, 2, 3, 4, 5, 11, 23, 48, 100])
    np.testing.assert_array_equal(epoch_schedule("dense:5,every:10", 30), [0, 1, 2, 3, 4, 5, 10, 20, 30])
    # dense part longer than the run: every epoch
    np.testing.assert_array_equal(epoch_schedule("dense:100,log", 7), np.arange(8))


def test_explicit_list():
    np.testing.assert_array_equal(epoch_schedule([5, 1, 1, 0], 10), [0, 1, 5])
    np.testing.assert_array_equal(epoch_schedule(np.array([3.0, 2.0]), 3), [2, 3])


@pytest.mark.parametrize("spec,n_epochs,match", [
    ("lin", 10, "unknown schedule"),
    ("every:0", 10, "positive"),
    ("every:x", 10, "every:k"),
    ("dense:x,log", 10, "dense:K"),
    ("dense:5", 10, "dense:K"),
    ([11], 10, r"0\.\.10"),
    ([-1, 2], 10, r"0\.\.10"),
    ([1.5], 10, "whole-number"),
    ([], 10, "non-empty"),
])
def test_bad_specs(spec, n_epochs, match):
    with pytest.raises(ValueError, match=match):
        epoch_schedule(spec, n_epochs)


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_epochs"):
        epoch_schedule("log", -1)
    with pytest.raises(ValueError, match="n_points"):
        epoch_schedule("log", 10, n_points=1)
    with pytest.raises(ValueError, match="n_epochs must be an integer"):
        epoch_schedule("log", 10.5)
