"""Child process of the --resume test in test_run_cli.py: trains one run of a preset with
``train_run`` and SIGKILLs itself right after epoch ``kill_epoch`` was committed, with a checkpoint
taken only at ``checkpoint_epoch`` (older than the kill, as after a crash between checkpoints).

Usage: ``python tests/_resume_child.py <out> <config json> <checkpoint_epoch> <kill_epoch>``.
"""
import json
import os
import signal
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import ibtoolkit  # noqa: E402, F401
import tensorflow as tf  # noqa: E402

from experiments import resume, training  # noqa: E402


def main(out, config, checkpoint_epoch, kill_epoch):
    save = resume._save
    resume._save = lambda saved, directory, epoch: save(saved, directory, epoch) if epoch == checkpoint_epoch else None

    class Kill(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == kill_epoch:  # after the recorder committed it and the checkpoint ran
                os.kill(os.getpid(), signal.SIGKILL)

    training.train_run(json.loads(config), out, checkpoint_seconds=0.0, callbacks=[Kill()])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
