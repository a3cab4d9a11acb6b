"""The convolution of S stacked members: one convolution per member vs one grouped convolution.

Run: ``python -m benchmarks.bench_member_conv [--members 10] [--batch 64] [--size 14]
[--channels 16] [--filters 32] [--repeats 30]``

Both forms compute member s's output from member s's input and kernel only, as
:class:`ibtoolkit.stacking.layers.MemberConv2D` must: *per member* unstacks the member axis and
runs S ordinary ``conv2d`` (what the layer does); *grouped* folds the members into the channels,
``(B, H, W, S*C)`` with kernel ``(kh, kw, C, S*F)``, and runs one convolution with S groups.  Timed:
one forward and backward pass (gradients for input and kernel of a summed-square loss), as a plain
``tf.function`` and XLA-compiled, interleaved, median of ``--repeats`` calls after one warm-up.  The
gradients of every form that runs are checked against the per-member plain form.  TensorFlow's CPU
kernels have no gradient for grouped convolutions unless oneDNN is on; that cell then reads
``unsupported``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow loads)
import tensorflow as tf  # noqa: E402


def per_member(x, kernel):
    """x (B, S, H, W, C), kernel (S, kh, kw, C, F) -> (B, S, H, W, F): S ordinary convolutions."""
    return tf.stack([tf.nn.conv2d(xs, ks, 1, "SAME") for xs, ks in zip(tf.unstack(x, axis=1), tf.unstack(kernel))],
                    axis=1)


def grouped(x, kernel):
    """The same as one convolution with S groups (members folded into the channels)."""
    _, s, h, w, c = x.shape
    _, kh, kw, _, f = kernel.shape
    xg = tf.reshape(tf.transpose(x, (0, 2, 3, 1, 4)), (-1, h, w, s * c))
    kg = tf.reshape(tf.transpose(kernel, (1, 2, 3, 0, 4)), (kh, kw, c, s * f))
    y = tf.nn.conv2d(xg, kg, 1, "SAME")
    return tf.transpose(tf.reshape(y, (-1, h, w, s, f)), (0, 3, 1, 2, 4))


def _step(form, x, kernel):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = form(x, kernel)
        loss = tf.reduce_sum(y * y)
    return tape.gradient(loss, [x, kernel])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=14, help="height = width of the input")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(a.batch, a.members, a.size, a.size, a.channels)), tf.float32)
    kernel = tf.constant(rng.normal(size=(a.members, 3, 3, a.channels, a.filters)), tf.float32)
    cases = {(name, jit): tf.function(lambda f=form: _step(f, x, kernel), jit_compile=jit)
             for name, form in (("per member", per_member), ("grouped", grouped)) for jit in (False, True)}
    reference, times, supported = None, {key: [] for key in cases}, {}
    for key, fn in cases.items():  # warm-up (tracing, compilation) and the check of the gradients
        try:
            grads = fn()
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
            supported[key] = str(e).strip().splitlines()[0][:100]
            continue
        supported[key] = None
        reference = grads if reference is None else reference
        err = max(float(tf.reduce_max(tf.abs(g - r)) / tf.reduce_max(tf.abs(r))) for g, r in zip(grads, reference))
        if err > 1e-5:
            raise AssertionError(f"{key}: gradients differ from the per-member plain form by {err:.2e} (relative)")
    for _ in range(a.repeats):  # interleaved, so that drift of the host hits every form alike
        for key, fn in cases.items():
            if supported[key] is None:
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
    print(f"S={a.members} B={a.batch} {a.size}x{a.size}x{a.channels} -> {a.filters} filters, 3x3, "
          f"forward + backward, median of {a.repeats} (ms); load average {os.getloadavg()[0]:.2f}")
    print("| form | plain graph | XLA |\n|---|---|---|")
    for name in ("per member", "grouped"):
        cells = [f"{1e3 * np.median(times[(name, jit)]):.1f}" if supported[(name, jit)] is None else "unsupported"
                 for jit in (False, True)]
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
