"""Tests of ibtoolkit.plotting: the right artists with the right data, files written, no global state.

Figures are checked through their artists (tagged with ``gid``): number of layer lines, points
per layer, the median/IQR numbers behind lines and bands (recomputed here with numpy), ceiling
positions and phase-marker positions.
"""
import json

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import ibtoolkit
from ibtoolkit import plotting
from ibtoolkit.plane import information_plane

LAYERS = ["dense", "dense_1", "dense_2"]
EPOCHS = [0, 1, 2, 5, 10, 30]


def table(seeds=(0,), estimators=("exact",), failed=False):
    """A plane table with the contract's columns and known, seed-dependent values."""
    rows = []
    for s in seeds:
        for est in estimators:
            for li, layer in enumerate(LAYERS):
                for e in EPOCHS:
                    rows.append(dict(
                        run=f"r{s}", dataset="bits", model="mlp", precision="full", variant="tanh", seed=s,
                        estimator=est, estimator_params=json.dumps({"k": 1}), estimator_label=f"{est}(k=1)",
                        layer=layer, layer_index=li, width=5 - li, binary=False, epoch=e,
                        ixt=(6 - li) * (1 - np.exp(-e / 4)) + 0.1 * s, ity=0.9 * (1 - np.exp(-e / 8)) + 0.01 * s * li,
                        ixt_ceiling=6.0, h_y=0.95, saturated=False, loss=1 / (e + 1) + s, accuracy=0.5 + e / 100,
                        val_loss=1.2 / (e + 1), val_accuracy=0.45 + e / 100, status="ok", error=""))
    df = pd.DataFrame(rows)
    if failed:
        bad = df.iloc[[0]].copy()
        bad[["ixt", "ity"]] = np.nan
        bad["status"], bad["error"], bad["epoch"] = "failed", "RuntimeError: x", 3
        df = pd.concat([df, bad], ignore_index=True)
    return df


def by_gid(ax, prefix, kind="collections"):
    return [a for a in getattr(ax, kind) if (a.get_gid() or "").startswith(prefix)]


@pytest.fixture(autouse=True)
def no_global_figures():
    before, backend, rc = plt.get_fignums(), matplotlib.get_backend(), dict(matplotlib.rcParams)
    yield
    assert plt.get_fignums() == before, "plotting must not register figures with pyplot"
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == rc


def assert_saved(base):
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF")):
        path = base.with_name(base.name + suffix)
        assert path.is_file() and path.stat().st_size > 1000
        assert path.read_bytes()[:4] == magic


def test_information_plane_lines_points_ceilings(tmp_path):
    df = table(failed=True)
    fig = plotting.plot_information_plane(df, path=tmp_path / "ip")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the plane and its epoch colorbar
    lines = by_gid(ax, "layer:", "lines")
    assert [ln.get_label() for ln in lines] == LAYERS
    for layer, line in zip(LAYERS, lines):
        want = df[(df.layer == layer) & (df.status == "ok")].sort_values("epoch")
        np.testing.assert_allclose(line.get_xdata(), want["ixt"])
        np.testing.assert_allclose(line.get_ydata(), want["ity"])
    points = by_gid(ax, "epochs:")
    assert [len(p.get_offsets()) for p in points] == [len(EPOCHS)] * 3  # the failed row is not drawn
    np.testing.assert_allclose(points[0].get_array(), EPOCHS)  # coloured by epoch
    assert by_gid(ax, "band:") == []  # one seed: no band
    (vline,) = by_gid(ax, "ceiling:ixt", "lines")
    (hline,) = by_gid(ax, "ceiling:hy", "lines")
    assert vline.get_xdata()[0] == 6.0 and hline.get_ydata()[0] == 0.95
    assert ax.get_xlabel() == "I(X;T) [bits]" and ax.get_ylabel() == "I(T;Y) [bits]"
    assert "mlp (full, tanh)" in ax.get_title() and "exact(k=1)" in ax.get_title()
    assert_saved(tmp_path / "ip")


def test_information_plane_seeds_median_and_iqr_band():
    df = table(seeds=(0, 1, 2, 3))
    fig = plotting.plot_information_plane(df)
    ax = fig.axes[0]
    lines, bands = by_gid(ax, "layer:", "lines"), by_gid(ax, "band:")
    assert len(lines) == len(bands) == 3
    for layer, line, band in zip(LAYERS, lines, bands):
        vals = np.stack([df[(df.layer == layer) & (df.seed == s)].sort_values("epoch")[["ixt", "ity"]].to_numpy()
                         for s in range(4)])  # (seeds, epochs, 2)
        np.testing.assert_allclose(line.get_xdata(), np.median(vals[..., 0], axis=0))
        np.testing.assert_allclose(line.get_ydata(), np.median(vals[..., 1], axis=0))
        q25, q75 = np.percentile(vals, [25, 75], axis=0)
        paths = band.get_paths()
        assert len(paths) == len(EPOCHS)
        for k, path in enumerate(paths):
            (x0, y0), (x1, y1) = path.get_extents().get_points()
            np.testing.assert_allclose([x0, y0, x1, y1], [q25[k, 0], q25[k, 1], q75[k, 0], q75[k, 1]], atol=1e-12)
    assert "median of 4 seeds" in ax.get_title()


def test_information_plane_phase_markers_and_given_axes():
    df = table()
    phases = pd.DataFrame({"layer": ["dense", "dense", "dense_2"], "e_fit": [4, 6, 10], "e_peak": [10, 10, 30]})
    fig, ax = plt.subplots()
    try:
        out = plotting.plot_information_plane(df, ax=ax, phases=phases)
        assert out is fig
        markers = {m.get_gid(): [] for m in by_gid(ax, "phase:")}
        for m in by_gid(ax, "phase:"):
            markers[m.get_gid()].append(m.get_offsets()[0])
        assert set(markers) == {"phase:dense", "phase:dense_2"}  # dense_1 has no phase row
        d = df[df.layer == "dense"].set_index("epoch")
        # median e_fit 5 -> recorded epoch 5; e_peak 10
        np.testing.assert_allclose(markers["phase:dense"], [[d.ixt[5], d.ity[5]], [d.ixt[10], d.ity[10]]])
    finally:
        plt.close(fig)


def test_information_plane_refuses_mixed_tables():
    df = pd.concat([table(estimators=("exact",)), table(estimators=("kde",))])
    with pytest.raises(ValueError, match="estimator configurations"):
        plotting.plot_information_plane(df)
    bad = table()
    bad["status"] = "failed"
    with pytest.raises(ValueError, match="no rows with status 'ok'"):
        plotting.plot_information_plane(bad)
    with pytest.raises(ValueError, match="lacks column"):
        plotting.plot_information_plane(table().drop(columns="ity"))
    with pytest.raises(ValueError, match="phases lacks"):
        plotting.plot_information_plane(table(), phases=pd.DataFrame({"layer": ["dense"]}))


def test_mi_vs_epoch(tmp_path):
    df = table(seeds=(0, 1, 2))
    phases = pd.DataFrame({"layer": LAYERS, "e_fit": [5, 5, 5], "e_peak": [30, 30, 30]})
    fig = plotting.plot_mi_vs_epoch(df, phases=phases, path=tmp_path / "mi")
    ax_ixt, ax_ity = fig.axes
    for ax, key in ((ax_ixt, "ixt"), (ax_ity, "ity")):
        assert ax.get_xscale() == "symlog"
        lines = by_gid(ax, "layer:", "lines")
        assert len(lines) == 3
        med = df[df.layer == "dense_1"].groupby("epoch")[key].median()
        np.testing.assert_allclose(lines[1].get_xdata(), EPOCHS)
        np.testing.assert_allclose(lines[1].get_ydata(), med.to_numpy())
        assert len(by_gid(ax, "band:")) == 3
        assert len(by_gid(ax, "phase:", "lines")) == 6  # e_fit and e_peak per layer
    assert by_gid(ax_ixt, "ceiling:ixt", "lines")[0].get_ydata()[0] == 6.0
    assert by_gid(ax_ity, "ceiling:ity", "lines")[0].get_ydata()[0] == 0.95
    assert_saved(tmp_path / "mi")


def test_metrics_one_point_per_epoch(tmp_path):
    df = table(seeds=(0, 1))  # metrics repeat on every layer row
    fig = plotting.plot_metrics(df, path=tmp_path / "metrics")
    ax_loss, ax_acc = fig.axes
    assert ax_loss.get_title() == "loss" and ax_acc.get_title() == "accuracy"
    train, val = by_gid(ax_loss, "metric:", "lines")
    assert (train.get_gid(), val.get_gid()) == ("metric:loss", "metric:val_loss")
    np.testing.assert_allclose(train.get_xdata(), EPOCHS)
    np.testing.assert_allclose(train.get_ydata(), [1 / (e + 1) + 0.5 for e in EPOCHS])  # median of seeds 0, 1
    assert len(by_gid(ax_acc, "metric:", "lines")) == 2
    assert_saved(tmp_path / "metrics")
    with pytest.raises(ValueError, match="no metric columns"):
        plotting.plot_metrics(df.drop(columns=["loss", "accuracy", "val_loss", "val_accuracy"]))


def test_estimator_grid(tmp_path):
    df = table(estimators=("exact", "binning", "kde"))
    fig = plotting.plot_estimator_grid(df, path=tmp_path / "grid")
    panels = [ax for ax in fig.axes if by_gid(ax, "layer:", "lines")]
    assert [ax.get_title() for ax in panels] == ["exact(k=1)", "binning(k=1)", "kde(k=1)"]
    assert all(len(by_gid(ax, "layer:", "lines")) == 3 for ax in panels)
    assert len(fig.axes) == 4  # three panels and one shared colorbar
    assert panels[0].get_xlim() == panels[2].get_xlim() and panels[0].get_ylim() == panels[2].get_ylim()
    assert_saved(tmp_path / "grid")


def test_overlap(tmp_path):
    rows = []
    for est in ("exact", "kde"):
        for prec, var, base in (("full", "tanh", 0.1), ("binary", "ste_sign", 0.8)):
            for i, layer in enumerate(LAYERS):
                med = base + 0.05 * i if not (est == "kde" and i == 2 and prec == "full") else np.nan
                rows.append(dict(precision=prec, variant=var, layer=layer, layer_index=i, estimator=est,
                                 overlap=med, overlap_lo=med - 0.1, overlap_hi=med + 0.2))
    pt = pd.DataFrame(rows)
    fig = plotting.plot_overlap(pt, path=tmp_path / "overlap")
    assert [ax.get_title() for ax in fig.axes] == ["exact", "kde"]
    ax = fig.axes[0]
    bnn = [c for c in ax.containers if c.get_label() == "binary / ste_sign"][0]
    x, y = bnn.lines[0].get_data()
    np.testing.assert_allclose(y, [0.8, 0.85, 0.9])
    assert np.all(np.diff(x) > 0) and len(x) == 3
    seg = bnn.lines[2][0].get_segments()  # vertical error bars: lo .. hi
    np.testing.assert_allclose([s[:, 1] for s in seg], [[0.7, 1.0], [0.75, 1.05], [0.8, 1.1]])
    dnn_kde = [c for c in fig.axes[1].containers if c.get_label() == "full / tanh"][0]
    assert len(dnn_kde.lines[0].get_xdata()) == 2  # the NaN (no compression) layer is listed, not drawn
    assert "no compression: full / tanh: dense_2" in fig.axes[1].get_xlabel()
    assert "no compression" not in fig.axes[0].get_xlabel()
    assert_saved(tmp_path / "overlap")
    with pytest.raises(ValueError, match="lacks column"):
        plotting.plot_overlap(pt.drop(columns="overlap_hi"))
    with pytest.raises(ValueError, match="repeated"):
        plotting.plot_overlap(pd.concat([pt, pt]))


def test_save_figure_wants_no_suffix(tmp_path):
    fig = plotting.plot_metrics(table())
    with pytest.raises(ValueError, match="without suffix"):
        plotting.save_figure(fig, tmp_path / "a.png")
    paths = plotting.save_figure(fig, tmp_path / "sub" / "a", formats=("png",))
    assert [p.name for p in paths] == ["a.png"] and paths[0].stat().st_size > 1000


def test_plots_of_a_real_plane(tmp_path):
    """End to end: a store -> information_plane (exact) -> every figure of one run."""
    from ibtoolkit.store import ActivationStore

    rng = np.random.default_rng(0)
    x = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float32)
    y = (x[:, :3].sum(1) >= 2).astype(np.int64)
    w = rng.normal(size=(8, 6))
    with ActivationStore.create(tmp_path / "store", inputs=x, labels=y, layers=[("h1", 6), ("h2", 3)],
                                binary=[True, True], model={"name": "bnn"}, dataset={"name": "bits8"}) as st:
        for e in (0, 1, 2, 4, 8, 16):
            z = (2 * x - 1) @ w * (1 + e) + rng.normal(size=6) * 0.3
            h1 = np.where(z >= 0, 1.0, -1.0)
            st.append(e, {"h1": h1, "h2": np.where(h1[:, :3] + h1[:, 3:] >= 0, 1.0, -1.0)},
                      metrics={"loss": 1 / (e + 1), "accuracy": 0.5 + e / 40,
                               "val_loss": 1.1 / (e + 1), "val_accuracy": 0.5 + e / 45})
    df = information_plane(tmp_path / "store", "exact", progress=False)
    fig = plotting.plot_information_plane(df, path=tmp_path / "real_ip")
    assert len(by_gid(fig.axes[0], "layer:", "lines")) == 2
    assert by_gid(fig.axes[0], "ceiling:ixt", "lines")[0].get_xdata()[0] == pytest.approx(8.0)
    plotting.plot_mi_vs_epoch(df, path=tmp_path / "real_mi")
    plotting.plot_metrics(df, path=tmp_path / "real_metrics")
    for base in ("real_ip", "real_mi", "real_metrics"):
        assert_saved(tmp_path / base)


def test_mi_vs_epoch_seed_band_is_the_numpy_interquartile_range():
    rng = np.random.default_rng(3)
    df = table(seeds=(0, 1, 2, 3, 4))
    df["ixt"] += rng.normal(0, 0.3, len(df))  # seeds scattered irregularly, not by a constant shift
    df["ity"] += rng.normal(0, 0.05, len(df))
    fig = plotting.plot_mi_vs_epoch(df)
    for ax, key in zip(fig.axes[:2], ("ixt", "ity")):
        lines, bands = by_gid(ax, "layer:", "lines"), by_gid(ax, "band:")
        assert len(lines) == len(bands) == 3
        for layer, line, band in zip(LAYERS, lines, bands):
            vals = np.stack([df[(df.layer == layer) & (df.seed == s)].sort_values("epoch")[key].to_numpy()
                             for s in range(5)])  # (seeds, epochs)
            np.testing.assert_allclose(line.get_ydata(), np.median(vals, axis=0))
            q25, q75 = np.percentile(vals, [25, 75], axis=0)
            verts = band.get_paths()[0].vertices
            for k, epoch in enumerate(EPOCHS):
                ys = verts[np.isclose(verts[:, 0], epoch), 1]
                np.testing.assert_allclose([ys.min(), ys.max()], [q25[k], q75[k]], atol=1e-12)
    assert "median of 5 seeds, IQR band" in fig.get_suptitle()
