"""Input validation: the fast finiteness check must agree with ``np.isfinite`` everywhere."""
import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode first)
from ibtoolkit.validation import _BLAS_CHECK_SIZE, all_finite, as_samples, check_inputs


@pytest.mark.parametrize("shape", [(300, 300), (10_000, 7), (_BLAS_CHECK_SIZE, 1), (50, 2000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_entry_anywhere_is_found(shape, dtype, bad):
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal(shape).astype(dtype)
    assert all_finite(a)
    for _ in range(10):
        b = a.copy()
        b[rng.integers(shape[0]), rng.integers(shape[1])] = bad
        assert not all_finite(b)
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            as_samples(b, "t")


def test_opposite_infinities_in_one_row_and_huge_finite_values():
    a = np.zeros((1000, 100), np.float32)
    a[3, 4], a[3, 5] = np.inf, -np.inf            # row sum NaN
    assert not all_finite(a)
    huge = np.full((1000, 100), np.finfo(np.float32).max / 2, np.float32)  # row sums overflow to inf
    assert all_finite(huge)
    assert as_samples(huge, "t") is not None


@pytest.mark.parametrize("d", [3, 24, 64, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["exact", "binning"])
def test_estimate_still_refuses_non_finite_codes(d, dtype, bad, name):
    """``exact`` skips the separate NaN/inf scan of t (checks_t_finite); the public call must still
    raise the validation's error, wherever the bad value sits (first or last block)."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((2000, 3))
    y = rng.integers(0, 2, 2000)
    est = ibtoolkit.get_estimator(name)
    for i, j in ((0, 0), (1999, d - 1), (1000, d // 2)):
        t = np.where(rng.random((2000, d)) < 0.5, -1, 1).astype(dtype)
        t[i, j] = bad
        with pytest.raises(ValueError, match="t contains 1 NaN or infinite"):
            check_inputs(x, t, y)
        with pytest.raises(ValueError, match="t contains 1 NaN or infinite"):
            est.estimate(x, t, y)
