"""Batching, determinism, divergence, and the regime at a small size."""
import numpy as np
import pandas as pd
import pytest
import torch

import mot_lib as mot
from mot_lib.claims.setting import compare_models, regime_report
from mot_lib.engine.training import train_surviving

SMALL = mot.Setting(N=3, d=12, L=6, n_train=300, n_test=600)
CFG = mot.TrainConfig(M=6, T1=40, T2=60, T=80, record_every=20)


def test_batched_equals_per_seed():
    """A seed's run is the same, bit for bit, whichever seeds share its batch (the fused kernels run each seed's sums
    on their own, in a fixed order): so a chapter's numbers do not depend on how its seeds were split into jobs."""
    both = mot.train_mot(SMALL, CFG, [3, 8], progress=False)
    for k, s in enumerate([3, 8]):
        one = mot.train_mot(SMALL, CFG, [s], progress=False)
        for name in ("W", "WKQ", "theta"):
            assert torch.equal(both.params[name][k], one.params[name][0]), name
        a = both.history[both.history.seed == s].reset_index(drop=True)
        b = one.history.reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_single_batched_equals_per_seed():
    sc = mot.SingleConfig(T=20, record_every=10)
    both = mot.train_single(SMALL, sc, [1, 2, 5], progress=False)
    one = mot.train_single(SMALL, sc, [2], progress=False)
    for name in ("W", "WKQ"):
        assert torch.equal(both.params[name][1], one.params[name][0]), name
    a = both.history[both.history.seed == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, one.history.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("attention,schedule", [(True, "three_stage"), (False, "three_stage"), (True, "joint")])
def test_deterministic_bit_for_bit(attention, schedule):
    cfg = CFG.replace(attention=attention, schedule=schedule)
    a = mot.train_mot(SMALL, cfg, [4], progress=False)
    b = mot.train_mot(SMALL, cfg, [4], progress=False)
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    c = mot.train_mot(SMALL, cfg, [5], progress=False)
    assert not np.array_equal(a.history.value.to_numpy(), c.history.value.to_numpy())


def test_history_is_tidy_and_staged():
    run = mot.train_mot(SMALL, CFG, [0], progress=False)
    h = run.history
    assert list(h.columns) == ["step", "seed", "stage", "quantity", "expert", "i", "j", "value"]
    steps = sorted(h.step.unique())
    assert steps == [0, 20, 40, 60, 80]
    st = h[h.quantity == "test_loss"].set_index("step").stage
    assert st.loc[40] == "I" and st.loc[60] == "II" and st.loc[80] == "III"
    D = h[(h.quantity == "dispatch") & (h.step == 80)].groupby("i").value.sum()
    np.testing.assert_allclose(D.to_numpy(), 1.0)  # each class row sums to 1
    assert h[h.quantity == "attn"].shape[0] == 5 * CFG.M * (2 * SMALL.N) ** 2
    with pytest.raises(KeyError, match="not recorded"):
        run.scalar("nonsense")


def test_stage_freezing():
    """Stage I/III never touch W_KQ; Stage II never touches W; attention-free keeps W_KQ = 0."""
    c1 = CFG.replace(T1=40, T2=40, T=40)  # Stage I only
    r1 = mot.train_mot(SMALL, c1, [0], progress=False)
    r0 = mot.train_mot(SMALL, CFG.replace(T1=1, T2=1, T=1, eta1=1e-12), [0], progress=False)
    assert torch.equal(r1.params["WKQ"], r0.params["WKQ"])
    c2 = CFG.replace(T1=0, T2=20, T=20)   # Stage II only
    r2 = mot.train_mot(SMALL, c2, [0], progress=False)
    assert not torch.equal(r2.params["WKQ"], r0.params["WKQ"])
    w_init = mot.models.init_mot(1, CFG.M, SMALL.d, CFG.sigma0, [mot.data.seed_streams(0)[1]])["W"]
    assert torch.equal(r2.params["W"], w_init)
    ra = mot.train_mot(SMALL, CFG.replace(attention=False), [0], progress=False)
    assert torch.count_nonzero(ra.params["WKQ"]) == 0


def test_divergence_stops_with_message():
    cfg = CFG.replace(stage1_opt="gd", eta1=1e4, sigma0=5.0)
    with pytest.raises(mot.DivergenceError, match=r"diverged at step \d+ \(stage I\).*seed\(s\) \[0\].*lower the step sizes"):
        mot.train_mot(SMALL, cfg, [0], progress=False)
    with pytest.raises(mot.DivergenceError, match="single transformer"):
        mot.train_single(SMALL, mot.SingleConfig(opt="gd", eta=1e4, sigma0=5.0, T=50), [0], progress=False)


def test_data_mismatch_rejected():
    d = mot.make_dataset(SMALL, [0])
    with pytest.raises(ValueError, match="other seeds"):
        mot.train_mot(SMALL, CFG, [1], data=d, progress=False)


@pytest.mark.slow
def test_regime_at_small_size():
    """The regime criteria of the default setting, at a smaller size (3 seeds)."""
    setting = mot.Setting(N=3, d=12, L=6, n_train=500, n_test=1500)
    cfg = mot.TrainConfig(M=12, T1=150, T2=225, T=300, record_every=25)
    runs = compare_models(setting, cfg, mot.SingleConfig(H=3), seeds=[0, 1, 2], progress=False)
    rep = regime_report(runs)
    assert rep.met.all(), rep.to_string()


def test_row_softmax_matches_torch_in_value_gradient_and_hessian():
    """The engine's written-out softmax equals torch.softmax, under autograd and under torch.func."""
    from mot_lib.engine.models import row_softmax
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(row_softmax(x), torch.softmax(x, -1), rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(row_softmax, (x,)) and torch.autograd.gradgradcheck(row_softmax, (x,))
    w = torch.randn(6, generator=g, dtype=torch.float64)
    mine = torch.func.hessian(lambda v: (row_softmax(v * x.detach()) ** 3).sum())(w)
    ref = torch.func.hessian(lambda v: (torch.softmax(v * x.detach(), -1) ** 3).sum())(w)
    assert torch.allclose(mine, ref, rtol=1e-12, atol=1e-14)


def test_snapshots_equal_a_run_cut_at_that_step():
    """train_mot(snapshot_at=...) keeps the weights a run cut at t ends with (the mechanism chapter's checkpoints)."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.TrainConfig(M=4, T1=10, T2=15, T=20, record_every=5)
    full = mot.train_mot(st, cfg, [0, 1], snapshot_at=(7, 12))
    for t in (7, 12):
        cut = mot.train_mot(st, cfg.replace(T=t, T1=min(cfg.T1, t), T2=min(cfg.T2, t)), [0, 1])
        for k in ("W", "WKQ", "theta"):
            assert torch.equal(full.snapshots[t][k], cut.params[k]), (t, k)
    assert set(full.snapshots) == {7, 12}


@pytest.mark.parametrize("attention", [True, False])
def test_a_run_resumed_at_T2_equals_the_whole_run(attention):
    """train_mot(start=run.resume_point(T2)) continues with the same weights and exploration streams: under the
    same config it ends with the very weights and records of the whole run; under another Stage III step it
    ends where a whole run at that step does (the attention-free MoE's step tuning branches at T2 this way)."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.TrainConfig(M=4, T1=10, T2=15, T=25, record_every=5, attention=attention)
    full = mot.train_mot(st, cfg, [0, 1], snapshot_at=(15,))
    for c in (cfg, cfg.replace(eta3=0.5)):
        whole = full if c is cfg else mot.train_mot(st, c, [0, 1])
        resumed = mot.train_mot(st, c, [0, 1], data=full.data, start=full.resume_point(15))
        for k in ("W", "WKQ", "theta"):
            assert torch.equal(whole.params[k], resumed.params[k]), k
        a = whole.scalar("test_loss").loc[15:]
        pd.testing.assert_frame_equal(a, resumed.scalar("test_loss"))
    with pytest.raises(ValueError, match="step 12 was not kept"):
        full.resume_point(12)
    with pytest.raises(ValueError, match="start: a resume point at step 15 of a run with other seeds"):
        mot.train_mot(st, cfg, [0], start=full.resume_point(15))


@pytest.mark.parametrize("lam3", [0.0, None])
def test_the_stage3_loss_track_equals_a_record_at_every_step(lam3):
    """loss_every=1 records the training and test loss at every Stage III step: the values a run recording
    everything at every step gives (the training loss, when Stage III does not explore, read off the next step's
    own loss: the same routing, another summation, so to 1e-12), the weights unchanged, the other quantities at
    their own cadence only."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.TrainConfig(M=4, T1=10, T2=15, T=40, record_every=10, lam3=lam3, eta3=0.5)
    every = mot.train_mot(st, cfg.replace(record_every=1), [0, 1], progress=False)
    track = mot.train_mot(st, cfg, [0, 1], progress=False, loss_every=1)
    plain = mot.train_mot(st, cfg, [0, 1], progress=False)
    assert all(torch.equal(track.params[k], plain.params[k]) for k in plain.params)
    for q in ("train_loss", "test_loss"):
        a, b = every.scalar(q).loc[15:], track.scalar(q).loc[15:]
        assert list(b.index) == list(range(15, 41)), q
        np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-12, atol=0)
        assert track.scalar(q).loc[:15].equals(plain.scalar(q).loc[:15])
    assert list(track.scalar("routing_acc").index) == list(plain.scalar("routing_acc").index)
    with pytest.raises(ValueError, match="loss_every=0 is not allowed"):
        mot.train_mot(st, cfg, [0], loss_every=0)


def test_a_resume_point_of_some_seeds_continues_them_alone():
    """resume_point(t, seeds): the point of those seeds only; resumed alone they end as in the whole batch (every
    seed's numbers are its own), and join_runs puts such runs back together."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.TrainConfig(M=4, T1=10, T2=15, T=25, record_every=5)
    full = mot.train_mot(st, cfg, [0, 1, 2], snapshot_at=(15,), progress=False)
    parts = [mot.train_mot(st, cfg, s, start=full.resume_point(15, seeds=s), progress=False) for s in ([2], [0, 1])]
    joined = mot.engine.training.join_runs(parts)
    assert joined.seeds == [2, 0, 1]
    for k in full.params:
        assert torch.equal(joined.params[k], full.params[k][[2, 0, 1]]), k
    pd.testing.assert_frame_equal(joined.scalar("test_loss"), full.scalar("test_loss").loc[15:])
    with pytest.raises(ValueError, match=r"seeds \[7\] are not seeds of this run"):
        full.resume_point(15, seeds=[7])
    with pytest.raises(ValueError, match="the runs share seeds"):
        mot.engine.training.join_runs([parts[0], parts[0]])


def test_stage3_exploration_is_its_own_parameter():
    """lam3 = 0: Stage III routes every sample to the gate's own choice (explore_agree = 1 there), Stages I-II
    unchanged; lam3 = None is lam in every stage (the same numbers as before the parameter existed)."""
    st = mot.Setting(n_train=200, n_test=200)
    base = mot.TrainConfig(M=4, T=30, T1=10, T2=20, record_every=5)
    a = mot.train_mot(st, base, [0, 1], progress=False)
    b = mot.train_mot(st, base.replace(lam3=base.lam), [0, 1], progress=False)
    c = mot.train_mot(st, base.replace(lam3=0.0), [0, 1], progress=False)
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    agree_a, agree_c = a.scalar("explore_agree"), c.scalar("explore_agree")
    assert (agree_c.loc[25:] == 1.0).all().all() and (agree_a.loc[25:] < 1.0).any().any()
    assert agree_c.loc[:20].equals(agree_a.loc[:20])
    with pytest.raises(ValueError, match="lam3"):
        base.replace(lam3=-1.0)


def test_detail_false_keeps_the_same_numbers_without_the_tables():
    """detail=False (train_mot and train_surviving): the same weights and the very same rows of every scalar
    quantity, and none of the per-expert or per-class tables; a result a fraction of the size."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.TrainConfig(M=4, T1=10, T2=15, T=30, record_every=5)
    full = mot.train_mot(st, cfg, [0, 1], progress=False, loss_every=2)
    slim = mot.train_mot(st, cfg, [0, 1], progress=False, loss_every=2, detail=False)
    assert all(torch.equal(full.params[k], slim.params[k]) for k in full.params)
    tables = {"dispatch", "align", "gap", "specialty", "attn"}
    assert tables <= set(full.history.quantity) and not tables & set(slim.history.quantity)
    scalars = full.history[~full.history.quantity.isin(tables)].reset_index(drop=True)
    pd.testing.assert_frame_equal(scalars, slim.history.reset_index(drop=True))
    survived, _ = train_surviving(st, cfg, [0, 1], loss_every=2, detail=False)
    pd.testing.assert_frame_equal(survived.history, slim.history)
    assert len(slim.history) * 3 < len(full.history)
