"""Child process for the store's kill tests (tests/test_store_crash.py): append epochs until killed.

Usage:

* ``python tests/_store_writer.py DIRECTORY [MAX_EPOCH]``: open (or create) the store with
  ``resume=True``, print ``ready <last epoch>`` and append epochs last+1, last+2, ... up to MAX_EPOCH;
* ``python tests/_store_writer.py --fork-server DIRECTORY``: import once, then for every ``go`` line
  on stdin fork a writer (as above, without end), print ``pid <pid>``, wait for it to die and print
  ``dead <pid> <exit code>``.  The test SIGKILLs the forked writer by pid; forking saves the ~0.3-1 s
  interpreter start-up per kill.

Each epoch's data depend only on the epoch number (``activations(epoch)``), so the parent can check
every committed epoch exactly.  Every 8th epoch also records an event, so kills land in manifest
rewrites too.
"""
import os
import sys

import numpy as np

N = 64
LAYERS = [("dense", 9), ("quant_dense/sign", 13), ("out", 2)]
BINARY = [False, True, False]


def inputs():
    rng = np.random.default_rng(2024)
    return rng.integers(0, 2, (N, 12)).astype(np.float32), rng.integers(0, 2, N)


def activations(epoch: int) -> dict:
    rng = np.random.default_rng(100_000 + epoch)
    return {"dense": rng.standard_normal((N, 9)).astype(np.float32),
            "quant_dense/sign": np.where(rng.random((N, 13)) < 0.5, -1.0, 1.0).astype(np.float32),
            "out": rng.standard_normal((N, 2)).astype(np.float32)}


def metrics(epoch: int) -> dict:
    return {"loss": 1.0 / (epoch + 1), "epoch_copy": float(epoch)}


def open_writer(directory):
    from ibtoolkit.store import ActivationStore

    x, y = inputs()
    return ActivationStore.create(directory, inputs=x, labels=y, layers=LAYERS, binary=BINARY,
                                  model={"name": "kill-test"}, resume=True)


def main(directory: str, max_epoch: int) -> None:
    store = open_writer(directory)
    last = store.last_epoch
    print(f"ready {last}", flush=True)
    epoch = 0 if last is None else last + 1
    while epoch <= max_epoch:
        store.append(epoch, activations(epoch), metrics(epoch))
        if epoch % 8 == 0:
            store.add_event("tick", f"epoch {epoch}", epoch)
        epoch += 1
    store.set_status("complete")
    store.close()


def serve(directory: str) -> None:
    import ibtoolkit.store  # noqa: F401 - imported once, before forking

    for line in sys.stdin:
        if line.strip() != "go":
            break
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                main(directory, 10**9)
                code = 0
            finally:
                os._exit(code)  # never return into the server loop
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"dead {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--fork-server":
        serve(sys.argv[2])
    else:
        main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10**9)
