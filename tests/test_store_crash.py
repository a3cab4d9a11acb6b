"""Kill test of the activation store: SIGKILL a writer at random instants, at least 20 times.

A child process (tests/_store_writer.py) reopens the store and appends epochs with data that depend
only on the epoch number, until the parent SIGKILLs it after a random delay: mostly while it
appends (after it reports ``ready``), sometimes while it starts and reopens (cleanup, torn-line
truncation, manifest rewrite).  After every kill:

* ``open_store`` works and reports status ``running``;
* the committed epochs are exactly 0, 1, ..., K (no gap, nothing half-visible), and K never goes
  backwards (a committed epoch is never lost);
* every committed epoch of every layer reads back equal to the data the writer computed for it,
  and its metrics equal the writer's metrics;
and at the end a writer reopening the store finds no leftovers and continues after K.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import _store_writer as writer
from ibtoolkit.store import open_store

WRITER = str(Path(__file__).with_name("_store_writer.py"))
KILLS = 24


def _expected(cache: dict, epoch: int) -> dict:
    if epoch not in cache:
        cache[epoch] = writer.activations(epoch)
    return cache[epoch]


def _uncommitted_leftovers(d: Path) -> bool:
    """Did the kill interrupt a commit (temporary or uncommitted files, or a torn log line)?  Diagnostic only."""
    log = (d / "epochs.jsonl").read_bytes()
    n_committed = log.count(b"\n")
    blocks = {lay["file"]: lay["block"]["bytes"] for lay in open_store(d).manifest["layers"]}
    past_the_end = any((d / f).stat().st_size != n_committed * size for f, size in blocks.items())
    return bool((log and not log.endswith(b"\n")) or past_the_end or list(d.glob(".*.tmp-*")))


class _ForkServer:
    """tests/_store_writer.py --fork-server: one interpreter start-up, one forked writer per kill."""

    def __init__(self, directory, env):
        self.proc = subprocess.Popen([sys.executable, WRITER, "--fork-server", str(directory)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.seen: dict = {}

    def expect(self, word: str) -> list:
        while word not in self.seen:
            line = self.proc.stdout.readline()
            assert line, f"fork server ended while waiting for {word!r}"
            self.seen[line.split()[0]] = line.split()[1:]
        return self.seen.pop(word)

    def start(self) -> int:
        self.seen.clear()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return int(self.expect("pid")[0])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def test_sigkill_at_random_instants_never_loses_a_committed_epoch(tmp_path):
    d = tmp_path / "run"
    with writer.open_writer(d) as s:  # the store exists before the first kill
        s.append(0, writer.activations(0), writer.metrics(0))
    rng = np.random.default_rng(20240607)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = _ForkServer(d, env)
    cache: dict = {}
    last, progressed, interrupted = 0, 0, 0
    try:
        for k in range(KILLS):
            pid = server.start()
            try:
                if k % 4 == 3:  # kill somewhere in reopen / cleanup / manifest rewrite / first appends
                    time.sleep(rng.uniform(0.0, 0.005))
                else:
                    ready = server.expect("ready")
                    assert ready == [str(last)]  # reopening continues after the last complete epoch
                    time.sleep(rng.uniform(0.0, 0.03))
            finally:
                os.kill(pid, signal.SIGKILL)
            dead = server.expect("dead")
            assert dead == [str(pid), str(-signal.SIGKILL)], f"the writer ended before it was killed: {dead}"

            interrupted += _uncommitted_leftovers(d)
            s = open_store(d)
            epochs = s.epochs
            assert s.manifest["status"] == "running" and s.status == "interrupted"  # derived: writer died
            np.testing.assert_array_equal(epochs, np.arange(len(epochs)))  # 0..K, no gaps
            assert epochs[-1] >= last, "a committed epoch disappeared"
            progressed += epochs[-1] > last
            last = int(epochs[-1])
            for name in writer.LAYERS:
                got = s.read(name[0])
                want = np.stack([_expected(cache, int(e))[name[0]] for e in epochs])
                np.testing.assert_array_equal(got, want, err_msg=f"layer {name[0]} after kill {k}")
            assert s.metrics == {int(e): writer.metrics(int(e)) for e in epochs}
    finally:
        server.close()
    assert progressed >= KILLS // 2, "most kills should land after some epochs were committed"
    print(f"{KILLS} kills, {last + 1} epochs committed, {interrupted} kills caught a commit half-way")

    with writer.open_writer(d) as s:  # a writer reopens: leftovers gone, continues after the last epoch
        assert s.last_epoch == last
        for lay in s.manifest["layers"]:  # exactly the committed blocks, nothing past them
            assert (d / lay["file"]).stat().st_size == (last + 1) * lay["block"]["bytes"]
        assert not [n for n in os.listdir(d) if ".tmp-" in n]
        s.append(last + 1, writer.activations(last + 1), writer.metrics(last + 1))
    s = open_store(d)
    assert s.epochs[-1] == last + 1
    np.testing.assert_array_equal(s.read("quant_dense/sign", [last + 1])[0],
                                  writer.activations(last + 1)["quant_dense/sign"])


def test_writer_runs_to_completion(tmp_path):
    """Control for the kill test: without a kill the same child commits every epoch and marks the store complete."""
    d = tmp_path / "run"
    proc = subprocess.run([sys.executable, WRITER, str(d), "20"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    s = open_store(d)
    assert s.status == "complete" and s.epochs.tolist() == list(range(21))
    np.testing.assert_array_equal(s.read("out", [20])[0], writer.activations(20)["out"])
    assert [e["epoch"] for e in s.events if e["kind"] == "tick"] == [0, 8, 16]
