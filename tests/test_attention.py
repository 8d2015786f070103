import numpy as np
import pandas as pd
import pytest

import mot_lib as mot
from mot_lib.claims import attention as att


def test_params_validation():
    with pytest.raises(ValueError, match="sigma0s=.*1.5 decades"):
        att.Prop2Params(sigma0s=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="sigma0s=.*at least 3"):
        att.Prop2Params(sigma0s=(0.01, 1.0))
    with pytest.raises(ValueError, match=r"^sigma0s=-0.1 is out of range"):
        att.Prop2Params(sigma0s=(-0.1, 0.01, 1.0))
    with pytest.raises(ValueError, match=r"^T2=100 is out of range"):
        att.Prop2Params(T1=200, T2=100)
    with pytest.raises(ValueError, match=r"^gd_etas=0.0 is out of range"):
        att.Prop2Params(gd_etas=(0.0,))
    with pytest.raises(ValueError, match=r"^gd_etas=\(\) is empty"):
        att.Prop2Params(gd_etas=())
    with pytest.raises(ValueError, match=r"^min_share=1.0 is out of range"):
        att.Prop2Params(min_share=1.0)
    with pytest.raises(ValueError, match=r"^eta2="):
        att.Prop2Params(eta2=0.0)
    with pytest.raises(ValueError, match=r"^M="):
        att.Prop2Params(M=0)
    with pytest.raises(ValueError, match=r"^seeds="):
        att.Prop2Params(seeds=(1, 1))
    P = att.Prop2Params()
    assert P.config().T == P.T2 and P.config().T1 == P.T1
    q = att.Prop2Params(quick=True).config()
    assert (q.T1, q.T2, q.T) == (50, 100, 100)
    assert mot.book.params_for("03_proposition2", seeds=3).seeds == (3,)


def test_score_parts_picks_specialty_entry_and_largest_other():
    N, K = 2, 4
    Pm = np.zeros((3, K, K))
    Pm[0, 2, 2], Pm[0, 0, 3] = 5.0, -0.7      # expert 0: specialty v1 (index 2)
    Pm[1, 3, 3], Pm[1, 2, 2] = 4.0, 0.2       # expert 1: specialty v2 (index 3)
    Pm[2, 2, 2], Pm[2, 3, 3] = 0.1, 9.0       # expert 2: specialty v1, but v2's entry is larger
    own, other = att.score_parts(Pm, np.array([0, 1, 0]), N)
    np.testing.assert_allclose(own, [5.0, 4.0, 0.1])
    np.testing.assert_allclose(other, [0.7, 0.2, 9.0])


def test_slope_rows_on_synthetic_sweeps():
    rng = np.random.default_rng(0)
    s0 = np.array([0.003, 0.01, 0.03, 0.1, 0.3])
    df = pd.DataFrame([{"seed": s, "sigma0": x, "flat": 2.0 * (1 + 0.05 * rng.standard_normal()),
                        "lin": 0.3 * x * (1 + 0.05 * rng.standard_normal()),
                        "const_plus_lin": 0.05 + 0.3 * x, "neg": -x} for s in range(8) for x in s0])
    theta1 = att.slope_row(df, "sigma0", "flat", "c", "b", (-0.25, 0.25))
    assert theta1["verdict"] == "holds" and abs(theta1["measured"]) < 0.05
    assert att.slope_row(df, "sigma0", "lin", "c", "b", (0.75, np.inf))["verdict"] == "holds"
    assert att.slope_row(df, "sigma0", "flat", "c", "b", (0.75, np.inf))["verdict"] == "does not hold"
    # a floor that training adds independently of sigma0 flattens the slope: O(sigma0) fails
    assert att.slope_row(df, "sigma0", "const_plus_lin", "c", "b", (0.75, np.inf))["verdict"] == "does not hold"
    # non-positive values cannot be fitted on log axes: inconclusive, never silently dropped
    assert att.slope_row(df, "sigma0", "neg", "c", "b", (0.75, np.inf))["verdict"] == "inconclusive"


def test_tiny_run_stage2_moves_the_specialty_entry():
    P = att.Prop2Params(seeds=(0, 1), T1=40, T2=60, record_every=20, M=9)
    st = mot.Setting(N=3, d=12, L=6, n_train=300, n_test=600)
    run = mot.train_mot(st, P.config(), [0, 1])
    s = att.score_stats(run, P.min_share)
    assert sorted(s.step.unique()) == [0, 20, 40, 60]
    init, end = s[s.step == 40].set_index("seed"), s[s.step == 60].set_index("seed")
    # W_KQ is frozen in Stage I: the scores at T1 are the initial ones
    np.testing.assert_allclose(s[s.step == 0].spec.to_numpy(), init.spec.to_numpy())
    assert s[s.step < 40].moved.isna().all() and (init.moved == 0).all()
    # normalized-GD Stage II raises the specialty entry far above its O(sigma0) initial value
    assert (end.spec > 0.5).all() and (end.spec > 5 * init.spec.abs()).all()
    e = att.endpoint(run, P.min_share, tag="x")
    assert list(e.seed) == [0, 1] and (e.tag == "x").all() and (e.used >= 3).all()
    assert ((e.top >= 0) & (e.top <= 1)).all() and e.pair.str.match(r"^p\((v\*|c\*|v|c), (v\*|c\*|v|c)\)$").all()
    pairs = att.other_pairs(run, P.min_share)
    assert len(pairs) == int(e.used.sum())
    kinds = att.other_kind(run, P.min_share)
    assert abs(kinds.sum() - 1) < 1e-12


def test_the_sigma0_sweeps_are_the_same_on_worker_processes():
    """sigma0_sweeps: every (variant, sigma0) point on worker processes gives the rows sigma0_sweep gives in this
    process, with a known run summarised where its configuration matches (and trained anew where it does not)."""
    P = att.Prop2Params(seeds=(0, 1), T1=10, T2=16, record_every=8, M=6, n_train=100, n_test=100,
                        sigma0s=(0.003, 0.032, 0.1))
    data = mot.make_dataset(P.setting(), list(P.seeds))
    main = att.run_stage2(P, data)
    variants = {"ngd": {}, "gd": dict(stage2_opt="gd", eta2=100.0), "mean": dict(query_pool="mean")}
    got = att.sigma0_sweeps(P, variants, known={P.sigma0: main}, jobs=2)
    for name, changes in variants.items():
        want = att.sigma0_sweep(P, data, known={P.sigma0: main}, **changes)
        assert got[name].equals(want), name
    assert not got["ngd"].equals(got["mean"])
