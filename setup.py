"""Packaging for ibtoolkit.

The built-in estimators are declared in the ``ibtoolkit.estimators`` entry-point group, exactly as a
third-party plugin declares its own (see docs/estimators.md, "Writing your own estimator").
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    # The stack known to install and run together on Python 3.11 (larq needs Keras 2 and numpy < 2).
    "tensorflow>=2.21,<2.22",
    "tf-keras>=2.21,<2.22",
    "larq>=0.14,<0.15",
    "tensorflow-probability>=0.25,<0.26",
    "numpy>=1.26,<2",
    "scipy>=1.11",
    "scikit-learn>=1.3",
    "matplotlib>=3.8",
    "pandas>=2.0",
    "joblib>=1.3",
    "threadpoolctl>=3.1",  # imported by ibtoolkit.plane (one BLAS thread per worker)
    "tqdm>=4.66",
    "zlib-ng>=0.5",  # SIMD CRC-32 for the activation store, same values as zlib.crc32, 13x faster
]

DISTRIBUTED = ["dask[distributed]>=2024.1"]

EXTRAS_REQUIRE = {
    "distributed": DISTRIBUTED,
    # The suite exercises the Dask path for real, so the test extra brings Dask too; pytest-xdist runs
    # the test files on every core (pytest.ini), since most of the suite's time is single-threaded tracing.
    "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", *DISTRIBUTED],
}

setup(
    name="ibtoolkit",
    version="0.1.0",
    description="Information-plane analysis of binary (Larq) and full-precision neural networks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",  # the version CI tests; no promise beyond it
    packages=find_packages(include=["ibtoolkit", "ibtoolkit.*", "estimators", "estimators.*",
                                    "experiments", "experiments.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "ibtoolkit.estimators": [
            "exact = estimators.exact:ExactEstimator",
            "binning = estimators.binning:BinningEstimator",
            "kde = estimators.kde:KDEEstimator",
            "ksg = estimators.knn:KSGEstimator",
        ],
    },
    license="Apache-2.0",
    classifiers=["Programming Language :: Python :: 3.11", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
