"""Child process of the SIGKILL test in test_callback.py: trains a tiny net with IBCallback, forever.

Usage: ``python tests/_callback_child.py <store directory> <epochs>``.  The parent kills it with
SIGKILL once the store holds a few epochs.  ``make_data`` and ``build_model`` are shared with the
parent so that the resumed run uses the very same analysis set (the store checks it by hash).
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

import ibtoolkit  # noqa: E402, F401


def make_data(n=256, seed=11):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, 12)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int64)
    return x, y


def build_model(seed=0):
    from ibtoolkit.models import mlp

    model = mlp(precision="binary", seed=seed, name="crash_child")
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def main(directory, epochs):
    from ibtoolkit.callback import IBCallback

    x, y = make_data()
    model = build_model()
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0,
              callbacks=[IBCallback(x, y, directory, schedule="all")])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
