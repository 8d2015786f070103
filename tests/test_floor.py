import numpy as np
import pandas as pd
import pytest

import mot_lib as mot
from mot_lib.claims import floor


def test_params_validation():
    with pytest.raises(ValueError, match=r"^tail=0 is out of range"):
        floor.FloorParams(tail=0)
    with pytest.raises(ValueError, match=r"^tail=0.01 covers fewer than 2 recorded steps"):
        floor.FloorParams(tail=0.01)
    with pytest.raises(ValueError, match=r"^sigma_xis=.*at least 2"):
        floor.FloorParams(sigma_xis=(1.0,))
    with pytest.raises(ValueError, match=r"^Ls=2 is out of range"):
        floor.FloorParams(Ls=(2, 8))
    with pytest.raises(ValueError, match=r"^sweep_seeds=6 is out of range"):
        floor.FloorParams(seeds=(0, 1, 2, 3, 4), sweep_seeds=6)
    with pytest.raises(ValueError, match=r"^T2="):
        floor.FloorParams(T1=300, T2=200)
    with pytest.raises(ValueError, match=r"^noisy_beta="):       # the parameter as typed, not Setting's field
        floor.FloorParams(noisy_beta=-1.0)
    with pytest.raises(ValueError, match=r"unknown parameter"):
        mot.book.params_for("04_lemma1", sigma=1.0)
    with pytest.raises(ValueError, match=r"^tune_seeds=\[0, 2\] share seeds with seeds"):
        floor.FloorParams(tune_seeds=(0, 2))
    with pytest.raises(ValueError, match=r"^af_eta3_grid=-1"):
        floor.FloorParams(af_eta3_grid=(0.1, -1.0))
    P = floor.FloorParams(quick=True)
    assert P.train_config().T == P.T // 2 and P.noisy_setting().noise_orthogonal is False
    assert P.noisy_setting(L=5).L == 5 and P.default_setting().noise_orthogonal is True


def test_log_ratio_and_verdict_logic():
    e = floor.log_ratio_estimate([10.0, 20.0, 40.0], [1.0, 2.0, 4.0])
    assert abs(e.value - 10) < 1e-9 and abs(e.lo - 10) < 1e-9 and abs(e.hi - 10) < 1e-9
    assert mot.stats.verdict(e, (1 + 1e-300, np.inf)) == "holds"
    e = floor.log_ratio_estimate([0.5, 0.6, 0.55], [1.0, 1.0, 1.0])
    assert e.hi < 1 and mot.stats.verdict(e, (1 + 1e-300, np.inf)) == "does not hold"


class _FakeRun:
    """Enough of a Run for the summaries: a test-loss/acc history and a cfg with T."""
    def __init__(self, loss, acc, T):
        self.loss, self.acc = loss, acc
        self.cfg = mot.TrainConfig(T1=0, T2=0, T=T)

    def scalar(self, q):
        return {"test_loss": self.loss, "test_acc": self.acc, "routing_acc": self.acc * 0 + 1}[q]

    def final(self, q):
        return self.scalar(q).iloc[-1]


def _fake(kind, T=300, seeds=tuple(range(8))):
    steps = np.arange(0, T + 1, 10)
    cols = {}
    for s in seeds:
        t = np.maximum(steps, 1).astype(float)
        cols[s] = (0.1 + 0.001 * s) * np.ones_like(t) if kind == "flat" else (1 + 0.01 * s) / t
    loss = pd.DataFrame(cols, index=pd.Index(steps, name="step"))
    acc = loss * 0 + (0.9 if kind == "flat" else 1.0)
    return _FakeRun(loss, acc, T)


def test_floor_rows_on_synthetic_runs():
    P = floor.FloorParams(T1=0, T2=0, T=300)
    flat, gd = _fake("flat"), _fake("gd")
    assert np.allclose(floor.per_seed_summary(gd, P.tail).tail_slope, -1)
    assert np.allclose(floor.per_seed_summary(flat, P.tail).tail_slope, 0)
    # the MoE is flat at 10% error, the MoT falls as 1/t with zero error: all four rows hold
    rows = floor.verdict_rows({"MoT": gd, "attention-free MoE": flat}, "x", P)
    assert [r["verdict"] for r in rows] == ["holds"] * 4
    # swapped: the attention-free model is the 1/t one, with no floor
    rows = floor.verdict_rows({"MoT": flat, "attention-free MoE": gd}, "x", P)
    assert [r["verdict"] for r in rows] == ["does not hold"] * 4


def test_a_floor_on_one_seed_is_not_the_models_floor():
    """Rows 2-4 are shares of seeds: one seed of eight with a 10% error floor (the default regime's
    zero-inflated case) does not make a floor, where a mean's t interval would straddle the threshold."""
    P = floor.FloorParams(T1=0, T2=0, T=300)
    flat, gd = _fake("flat"), _fake("gd")
    moe = _fake("gd")
    moe.acc[0] = 0.9                     # seed 0 alone keeps a 10% error
    moe.loss[0] = flat.loss[0]           # and a flat loss
    rows = floor.verdict_rows({"MoT": gd, "attention-free MoE": moe}, "x", P)
    assert [r["verdict"] for r in rows[1:]] == ["does not hold"] * 3, [r["measured"] for r in rows]
    assert rows[2]["measured"] == 1 / 8 and rows[2]["test"].startswith("share of seeds")


def test_tiny_pair_and_sweep():
    P = floor.FloorParams(seeds=(0, 1), quick=True, T1=20, T2=30, T=40, record_every=5, sweep_every=5,
                          sigma_xis=(0.5, 1.0), Ls=(5, 6), sweep_seeds=1)
    st = P.noisy_setting(N=3, d=12, L=6, n_train=120, n_test=200)
    runs = floor.run_pair(st, P.train_config(), P.seeds)
    assert float(runs["attention-free MoE"].params["WKQ"].abs().max()) == 0.0
    assert float(runs["MoT"].params["WKQ"].abs().max()) > 0.0
    s = floor.per_seed_summary(runs["MoT"], P.tail)
    assert list(s.seed) == [0, 1] and ((s.tail_err >= 0) & (s.tail_err <= 1)).all()
    rows = floor.verdict_rows(runs, "tiny", P)
    assert len(rows) == 4 and all(r["verdict"] in mot.stats.VERDICTS for r in rows)
    sw = floor.sweep(P, "sigma_xi", reuse={1.0: runs}, N=3, d=12, L=6, n_train=120, n_test=200)
    assert sorted(sw.sigma_xi.unique()) == [0.5, 1.0]
    assert len(sw) == 2 * 2 * 1 and set(sw.seed) == {0}


def test_lever_search_roundtrip_and_bad_files(tmp_path):
    """explore_levers on one tiny lever writes a table that load_levers reads back; bad files name the file."""
    lever = ((False, 1.0, 2.0, 5, 60),)
    df = floor.explore_levers(seeds=(0,), levers=lever, record_every=25, progress=False)
    assert list(df.columns) == floor.LEVER_COLUMNS and len(df) == 1
    assert 0.0 <= df["final_err | MoT"].iloc[0] <= 1.0
    f = floor.save_levers(df, tmp_path / "levers.csv")
    back = floor.load_levers(f, levers=lever)
    with pytest.raises(ValueError, match="levers.csv: line 2 .* is not a row of the levers of floor.LEVERS"):      # not the book's levers
        floor.load_levers(f)
    np.testing.assert_allclose(back["final_loss | MoT"], df["final_loss | MoT"], rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        floor.load_levers(tmp_path / "missing.csv")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="cols.csv: expected the columns"):
        floor.load_levers(tmp_path / "cols.csv")
    bad = back.astype({"sigma_xi": object})
    bad.loc[0, "sigma_xi"] = "lots"
    bad.to_csv(tmp_path / "vals.csv", index=False)
    with pytest.raises(ValueError, match="vals.csv: a value is not a number"):
        floor.load_levers(tmp_path / "vals.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="bin.csv"):
        floor.load_levers(tmp_path / "bin.csv")


def test_committed_lever_table_is_valid():
    df = floor.load_levers()
    assert len(df) == len(floor.LEVERS)
    assert [tuple(r) for r in df[["sigma_xi", "beta", "L", "n_train"]].itertuples(index=False)] == \
        [lv[1:] for lv in floor.LEVERS]


def test_the_attention_free_moe_gets_its_own_stage3_step():
    """run_regime: the step is chosen on tune_seeds (lowest median final training loss, a diverging step never);
    the verdicts' attention-free MoE shares Stages I-II with the ablation at the MoT's steps and differs in
    Stage III only."""
    P = floor.FloorParams(seeds=(0, 1), T1=20, T2=30, T=40, record_every=5, af_eta3_grid=(1.0, 10.0, 1e7),
                          tune_seeds=(7, 8))
    st = P.noisy_setting(N=3, d=12, L=6, n_train=120, n_test=200)
    runs, eta, tab = floor.run_regime(P, st, P.train_config())
    assert list(tab.eta3) == [1.0, 10.0, 1e7] and tab.set_index("eta3").diverged[1e7]
    ok = tab[~tab.diverged]
    assert eta == ok.eta3[ok["train loss at T"].idxmin()] and tab.chosen.sum() == 1
    tuned, base = runs["attention-free MoE"], runs[floor.AT_MOT_STEPS]
    assert tuned.cfg.eta3 == eta and base.cfg.eta3 == P.train_config().eta3 and not tuned.cfg.attention
    a, b = tuned.scalar("test_loss"), base.scalar("test_loss")
    pd.testing.assert_frame_equal(a.loc[:30], b.loc[:30])
    assert list(a.index) == list(b.index) and not a.loc[40].equals(b.loc[40])


def test_the_chapter_runs_are_the_same_on_worker_processes():
    """run_regimes and sweeps spread the regimes and the two sweeps over worker processes: every run, history,
    tuning table and sweep row is bit-identical to the in-process run, and to the sweep that summarises the
    centre's whole runs."""
    import torch
    P = floor.FloorParams(seeds=(0, 1), T1=20, T2=30, T=40, record_every=5, sweep_every=5, af_eta3_grid=(1.0, 10.0),
                          tune_seeds=(7, 8), sigma_xis=(0.5, 1.0), Ls=(5, 6), sweep_seeds=1, noisy_sigma_xi=1.0)
    small = dict(N=3, d=12, L=6, n_train=120, n_test=200)
    regimes = {"default": P.default_setting().replace(**small), "noisy": P.noisy_setting(**small)}
    a, b = floor.run_regimes(P, regimes, P.train_config(), jobs=1), floor.run_regimes(P, regimes, P.train_config(), jobs=2)
    assert a[1] == b[1] and all(a[2][k].equals(b[2][k]) for k in regimes)
    for k in regimes:
        for name, ra in a[0][k].items():
            rb = b[0][k][name]
            assert ra.history.equals(rb.history), (k, name)
            assert all(torch.equal(ra.params[p], rb.params[p]) for p in ra.params), (k, name)
    centre = regimes["noisy"]
    sa = floor.sweeps(P, centre, a[0]["noisy"], a[1]["noisy"], jobs=1, **small)
    sb = floor.sweeps(P, centre, a[0]["noisy"], a[1]["noisy"], jobs=2, **small)
    for field in ("sigma_xi", "L"):
        whole = floor.sweep(P, field, reuse={getattr(centre, field): a[0]["noisy"]}, af_eta3=a[1]["noisy"], **small)
        assert sa[field].equals(sb[field]) and sa[field].equals(whole), field
