"""Read-only and full target directories fail before training starts, on real file systems.

A tiny tmpfs is mounted read-only, or filled up, under the test's temporary directory (needs root
and mount permission; skipped otherwise: tests/test_store.py covers the same code paths by
simulating ENOSPC at the write call).  ``model.fit`` with an :class:`IBCallback` into such a
directory must raise :class:`StoreError` naming the directory from ``on_train_begin``, before a
single epoch is trained, and a store opened on a file system that fills up during the run keeps
every committed epoch.
"""
import errno
import os
import subprocess

import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
import tensorflow as tf
from ibtoolkit import IBCallback, open_store
from ibtoolkit.store import ActivationStore, StoreError

N, WIDTHS = 512, (32, 16)          # one epoch of float32 activations: 512 * 48 * 4 = 98 KB


def _mount(target, options):
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")


@pytest.fixture
def mounts(tmp_path):
    made = []

    def mount(name, options):
        target = tmp_path / name
        _mount(target, options)
        made.append(target)
        return target

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    for target in made:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _fill(directory, leave=0):
    """Write a file until the file system has at most ``leave`` bytes free."""
    fd = os.open(directory / "filler.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # unbuffered writes
    try:
        while True:
            st = os.statvfs(directory)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            os.write(fd, b"\0" * min(4096, free - leave))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


class _Epochs(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begun = []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)


def _fit_into(directory):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8,)),
                                 tf.keras.layers.Dense(WIDTHS[0], activation="tanh", name="h1"),
                                 tf.keras.layers.Dense(WIDTHS[1], activation="tanh", name="h2"),
                                 tf.keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _data()
    counter = _Epochs()
    with pytest.raises(StoreError) as info:
        model.fit(x, y, epochs=1000, batch_size=256, verbose=0,
                  callbacks=[IBCallback(x, y, directory, schedule="all", background=False), counter])
    return str(info.value), counter.begun


def test_read_only_target_fails_in_on_train_begin_before_any_epoch(mounts):
    ro = mounts("ro", "ro,size=1m")
    message, begun = _fit_into(ro / "run")
    assert begun == []
    assert str(ro / "run") in message and "cannot create the store directory" in message
    message, begun = _fit_into(ro)                                   # the read-only directory itself
    assert begun == [] and str(ro) in message and "not writable" in message


@pytest.mark.parametrize("leave", [0, 32 * 1024])
def test_full_target_fails_in_on_train_begin_before_any_epoch(mounts, leave):
    """Completely full, and with room for the manifest but not for one epoch (the size probe)."""
    full = mounts("full", "size=512k")
    _fill(full, leave)
    message, begun = _fit_into(full / "run")
    assert begun == []
    assert f"{full / 'run'}: store directory is not writable (or full): [Errno 28] No space left" in message


def test_disk_filling_up_mid_run_keeps_every_committed_epoch(mounts):
    """Space for the store and a few epochs only: the epoch that does not fit raises StoreError naming
    it; all earlier epochs stay readable."""
    small = mounts("small", "size=640k")
    x, y = _data()
    rng = np.random.default_rng(1)
    store = ActivationStore.create(small / "run", inputs=x, labels=y, layers=[("h1", WIDTHS[0]), ("h2", WIDTHS[1])],
                                   binary=[False, False])
    committed = []
    with pytest.raises(StoreError, match=r"could not commit epoch \d+") as info:
        for epoch in range(100):
            store.append(epoch, {name: rng.standard_normal((N, w)).astype(np.float32)
                                 for name, w in zip(("h1", "h2"), WIDTHS)})
            committed.append(epoch)
    assert str(small / "run") in str(info.value) and 1 <= len(committed) < 10
    store.close()
    reopened = open_store(small / "run")
    assert reopened.epochs.tolist() == committed
    reopened.verify()


def test_cli_out_on_a_read_only_or_full_file_system_exits_2(mounts, capsys):
    from experiments.run import main

    ro = mounts("ro_out", "ro,size=64k")
    full = mounts("full_out", "size=64k")
    _fill(full)
    for out in (ro / "results", full):
        with pytest.raises(SystemExit) as exc:
            main(["--preset", "tiny", "--out", str(out)])
        assert exc.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and f"--out {out} is not writable" in errors[0]
        assert "choose a writable directory with --out" in errors[0]
