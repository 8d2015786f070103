import numpy as np
import pandas as pd
import pytest
import torch

import mot_lib as mot
from mot_lib.claims import mechanism as mech
from mot_lib.engine import metrics as mt


def test_params_validation():
    with pytest.raises(ValueError, match=r"^min_share=0 is out of range"):
        mech.MechanismParams(min_share=0)
    with pytest.raises(ValueError, match=r"^clear_gap=3"):
        mech.MechanismParams(clear_gap=3.0)
    with pytest.raises(ValueError, match=r"^T=300 is out of range"):
        mech.MechanismParams(T=300)          # Stage III needs at least one step
    with pytest.raises(ValueError, match=r"^early_step=500 is out of range"):
        mech.MechanismParams(early_step=500)
    with pytest.raises(ValueError, match=r"^M=1 is out of range"):
        mech.MechanismParams(M=1)            # the MoT needs experts to specialize
    with pytest.raises(ValueError, match=r"^H=0"):
        mech.MechanismParams(H=0)            # validated through SingleConfig
    with pytest.raises(ValueError, match=r"^seeds="):
        mech.MechanismParams(seeds=(1, 1))
    P = mech.MechanismParams()
    assert P.steps() == [0, 50, 200, 500]
    assert mech.MechanismParams(quick=True).steps() == [0, 25, 100, 250]
    assert mot.book.params_for("06_mechanism", quick=True).quick


def test_class_vs_rest_and_offdiag():
    v = torch.tensor([1.0, 0.0])
    G = torch.stack([-v, v, v, v])  # one class against three aligned ones
    C = mt.cosine_matrix(G).numpy()
    assert mech.offdiag_mean(C) == pytest.approx(0.0)          # the mean hides the conflict at N = 4 ...
    assert np.allclose(mech.class_vs_rest(G)[0], -1.0)         # ... class vs rest does not
    G2 = torch.eye(3)
    assert np.allclose(mech.class_vs_rest(G2), 0.0)            # orthogonal classes: no conflict


def test_cosines_of_gradients_of_any_scale():
    """Late in training the per-class gradients are near 1e-170: their squares underflow, and the clamped norm
    made 'cosines' of 1e87 (the heatmaps showed them).  The scaled cosines stay in [-1, 1] and equal the plain
    ones at ordinary scale; a zero gradient has no cosine (NaN)."""
    G = torch.tensor([[3.0, 4.0, 0.0], [4.0, -3.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(mech.cosines(G), mt.cosine_matrix(G))
    tiny = G * 1e-170
    assert not (mt.cosine_matrix(tiny).abs() <= 1 + 1e-12).all()     # the old computation, broken at this scale
    assert torch.allclose(mech.cosines(tiny), mt.cosine_matrix(G))
    assert mech._cos(tiny[0], tiny[1]) == pytest.approx(float(mt.cosine_matrix(G)[0, 1]))
    assert np.allclose(mech.class_vs_rest(tiny), mech.class_vs_rest(G))
    z = torch.cat([G, torch.zeros(1, 3, dtype=torch.float64)])
    assert torch.isnan(mech.cosines(z)[3]).all() and not torch.isnan(mech.cosines(z)[:3, :3]).any()


def _conf(shared, within, purity):
    rows = [{"model": "shared expert (M=1)", "step": 10, "seed": s, "vs_rest_cos": v} for s, v in enumerate(shared)]
    rows += [{"model": "MoT specialists", "step": 10, "seed": s, "within_cos": w, "purity": p}
             for s, (w, p) in enumerate(zip(within, purity))]
    return pd.DataFrame(rows)


def test_conflict_rows_verdicts():
    k = 4  # 12 seeds: a share of 12/12 has a Wilson lower bound of 0.76, above the default seed_share 0.5
    rows = mech.conflict_rows(_conf([-0.9, -0.8, -0.95] * k, [1.0, 0.99, 1.0] * k, [1.0, 1.0, 0.99] * k), 10, 0.1, 0.5)
    assert [r["verdict"] for r in rows] == ["holds", "holds", "holds"]
    rows = mech.conflict_rows(_conf([0.05, 0.1, 0.0] * k, [0.3, 0.2, 0.4] * k, [0.5, 0.6, 0.4] * k), 10, 0.1, 0.5)
    assert [r["verdict"] for r in rows] == ["does not hold"] * 3
    # one impure seed in twelve: 11/12 (Wilson lower bound 0.65) shows "more than half" with confidence
    rows = mech.conflict_rows(_conf([-0.9] * 12, [1.0] * 12, [1.0] * 11 + [0.5]), 10, 0.1, 0.5)
    assert rows[2]["verdict"] == "holds"
    # four impure seeds in twelve: 8/12 (Wilson [0.39, 0.86]) cannot tell "more than half" from "less"
    rows = mech.conflict_rows(_conf([-0.9] * 12, [1.0] * 12, [1.0] * 8 + [0.5] * 4), 10, 0.1, 0.5)
    assert rows[2]["verdict"] == "inconclusive" and "leans holds" in rows[2]["note"]


def test_curvature_rows_verdicts():
    def seedwise(expert, single):
        rows = [{"model": "MoT specialists", "subspace": sub, "seed": s, "rel_min": v}
                for sub in ("signals", "full") for s, v in enumerate(expert)]
        rows += [{"model": "single transformer", "subspace": "signals", "seed": s, "rel_min": v}
                 for s, v in enumerate(single)]
        return pd.DataFrame(rows)
    rows = mech.curvature_rows(seedwise([0.1, 0.2, 0.15] * 4, [-0.01, -0.02, 0.0] * 4), 1e-3)
    assert [r["verdict"] for r in rows] == ["holds", "holds", "holds"]
    rows = mech.curvature_rows(seedwise([-1e-4, -2e-4, -3e-4] * 4, [0.1, 0.2, 0.3] * 4), 1e-3)
    assert [r["verdict"] for r in rows] == ["does not hold"] * 3
    # every seed's single transformer below its experts, by amounts spread over three decades (as measured):
    # the share decides, where a mean's t interval would cross 0
    rows = mech.curvature_rows(seedwise([-1e-4] * 8, [-1.5e-4, -1e-4 - 1e-6, -1e-2, -2e-4, -1.2e-4, -5e-3, -3e-4, -1.1e-4]), 1e-3)
    assert rows[2]["verdict"] == "holds" and rows[2]["measured"] == 1.0
    assert mot.stats.mean_t(np.array([-5e-5, -1e-6, -1e-2, -1e-4, -2e-5, -4.9e-3, -2e-4, -1e-5])).hi > 0


def test_tiny_run_measures_agree_with_engine():
    st = mot.Setting(N=3, d=12, L=6, n_train=150, n_test=60)
    cfg = mot.TrainConfig(M=6, T1=30, T2=40, T=50, record_every=50)
    seeds = [0, 1]
    data = mot.make_dataset(st, seeds)
    runs = mech.checkpoints(st, cfg, seeds, data, [0, 50])
    assert torch.equal(runs[0].params["W"], mot.models.init_mot(2, 6, 12, cfg.sigma0,
                       [mot.data.seed_streams(s)[1] for s in seeds])["W"])
    run = runs[50]
    df, mats = mech.specialist_conflict(run, min_share=0.01)
    assert len(df) > 0 and df.within_cos.between(-1, 1).all() and df.purity.between(0, 1).all()
    assert all(C.shape == (3, 3) for C in mats.values())
    spec = mech.expert_hessian_spectrum(run, "train", "signals")
    ref = mt.expert_hessian_min_eig(run, "train", "signals").numpy()
    for _, x in spec.iterrows():
        assert x.lam_min == pytest.approx(ref[seeds.index(int(x.seed)), int(x.expert)], rel=1e-9, abs=1e-15)
        assert x.lam_max >= x.lam_min
    shared = mech.checkpoints(st, cfg.replace(M=1), seeds, data, [50])[50]
    sdf, C = mech.shared_conflict(shared)
    assert C.shape == (2, 3, 3) and np.allclose(C[:, range(3), range(3)], 1.0)
    with pytest.raises(ValueError, match="M = 1"):
        mech.shared_conflict(run)
    single = mot.train_single(st, mot.SingleConfig(H=2, J=2, T=5), seeds, data=data)
    ss = mech.single_hessian_spectrum(single)
    for sub in ("signals", "full"):
        ref = mt.single_hessian_min_eig(single, sub).numpy()
        got = ss[ss.subspace == sub].lam_min.to_numpy()
        assert np.allclose(got, ref, rtol=1e-8, atol=1e-14)
    # the closed-form Hessian is the autograd one, entry by entry, also after training has moved the weights
    trained = mot.train_single(st, mot.SingleConfig(H=2, J=2, T=60), seeds, data=data)
    for run in (single, trained):
        for s in range(len(seeds)):
            (h1, b1), (h2, b2) = mech.single_ffn_hessian(run, s), mt.single_ffn_hessian(run, s)
            assert torch.allclose(h1, h2, rtol=1e-9, atol=1e-15 * float(h2.abs().max())) and torch.equal(b1, b2)


def test_curvature_at_the_start_of_stage3():
    """stage3_start_curvature: the own-pair spectrum is the Hessian restricted to span{c_n*, v_n*} (checked against
    a direct autograd Hessian of one expert), the label curvature is v*^T H v* over lambda_max on R^d; the rows
    decide on the share of seeds."""
    st = mot.Setting(N=3, d=12, L=6, n_train=150, n_test=60)
    cfg = mot.TrainConfig(M=6, T1=30, T2=40, T=50, record_every=50)
    seeds = [0, 1]
    data = mot.make_dataset(st, seeds)
    run = mech.checkpoints(st, cfg, seeds, data, [40])[40]
    own = mech.expert_hessian_spectrum(run, "train", "own")
    full = mech.expert_hessian_spectrum(run, "train", "full")
    x = own.iloc[0]
    s, m = seeds.index(int(x.seed)), int(x.expert)
    idx, pi, a = mot.models.eval_routing(run, data.train)
    mask = idx[s] == m
    X, y, pim, am = data.train.X[s][mask], data.train.y[s][mask], pi[s][mask], a[s][mask]
    sigma = mot.models.activation(cfg.activation)
    H = torch.func.hessian(lambda w: mot.models.logistic_loss(y * pim * (am * sigma(X @ w)).sum(-1)).mean())(
        run.params["W"][s, m])
    n_star = int(mt.specialty(run.params["W"], data.V)[s, m])
    v = data.signals[s][st.N + n_star]
    assert x.curv_own_v == pytest.approx(float(v @ H @ v), rel=1e-9)
    B = torch.linalg.qr(data.signals[s][[n_star, st.N + n_star]].T).Q
    ev = torch.linalg.eigvalsh(B.T @ H @ B)
    assert x.lam_min == pytest.approx(float(ev[0]), rel=1e-9, abs=1e-15) and x.lam_max == pytest.approx(float(ev[1]), rel=1e-9)
    t2 = mech.stage3_start_curvature(run, 0.0)
    lam_full = full[(full.seed == x.seed) & (full.expert == m)].lam_max.iloc[0]
    assert t2.set_index("seed").label[int(x.seed)] <= x.curv_own_v / lam_full + 1e-15
    rows = mech.stage3_start_rows(pd.DataFrame({"seed": range(12), "label": [0.9] * 12, "own": [-1e-4] * 12,
                                                "class_token": [-1e-4] * 12}), 1e-3)
    assert [r["verdict"] for r in rows] == ["holds", "does not hold"]


def test_the_single_transformer_is_read_at_the_mots_loss():
    """at_matched_loss: each seed's weights at the first step whose training loss is at or below its target (the
    snapshot of that step, equal to a run cut there), the end where it never is."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.SingleConfig(H=3, J=2, T=12, eta=0.5, record_every=4)
    run = mot.train_single(st, cfg, [0, 1], snapshot_at=range(13))
    trace = run.snapshots["train_loss"]
    assert trace.shape == (12, 2)
    target = pd.Series({0: float(trace[5, 0]), 1: -1.0})          # seed 1 never reaches a negative loss
    m = mech.at_matched_loss(run, target)
    k = int(torch.nonzero(trace[:, 0] <= target[0])[0])
    assert m.matched_steps == {0: k, 1: 12} and k <= 5
    cut = mot.train_single(st, cfg.replace(T=max(k, 1)), [0, 1]) if k else None
    if cut is not None:
        assert torch.equal(m.params["W"][0], cut.params["W"][0])
    assert torch.equal(m.params["W"][1], run.params["W"][1])


def test_a_single_run_stopped_at_the_targets_gives_the_full_runs_weights_where_they_are_read():
    """train_single(until_loss=...) stops once every seed has reached its target; read by at_matched_loss, its
    weights, steps and losses are the full run's, and a seed that never reaches its target runs to the end."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.SingleConfig(H=3, J=2, T=12, eta=0.5, record_every=4)
    full = mot.train_single(st, cfg, [0, 1, 2], snapshot_at=range(13))
    trace = full.snapshots["train_loss"]
    target = pd.Series({0: float(trace[3, 0]), 1: float(trace[7, 1]), 2: float(trace[5, 2])})
    early = mot.train_single(st, cfg, [0, 1, 2], snapshot_at=range(13), until_loss=target.to_numpy())
    want = {s: int(torch.nonzero(trace[:, k] <= target[s])[0]) for k, s in enumerate([0, 1, 2])}
    assert early.stopped_at == max(want.values()) < cfg.T and full.stopped_at == cfg.T
    assert torch.equal(early.snapshots["train_loss"], trace[:early.stopped_at + 1])
    a, b = mech.at_matched_loss(full, target), mech.at_matched_loss(early, target)
    assert a.matched_steps == b.matched_steps == want
    for name in ("W", "WKQ"):
        assert torch.equal(a.params[name], b.params[name])
    assert early.history.step.max() == early.stopped_at          # recorded where it stopped
    for name in ("W", "WKQ"):                                    # and its weights are those after stopped_at steps
        assert torch.equal(early.params[name], full.snapshots[early.stopped_at][name])
    rec = lambda r: r.history[r.history.step == early.stopped_at].value.to_numpy()
    assert np.array_equal(rec(early), rec(mot.train_single(st, cfg.replace(T=early.stopped_at), [0, 1, 2])))
    never = mot.train_single(st, cfg, [0, 1, 2], snapshot_at=range(13), until_loss=[target[0], -1.0, target[2]])
    assert never.stopped_at == cfg.T and torch.equal(never.params["W"], full.params["W"])
    with pytest.raises(ValueError, match="one finite training loss per seed"):
        mot.train_single(st, cfg, [0, 1, 2], snapshot_at=range(13), until_loss=[0.1, 0.2])
    with pytest.raises(ValueError, match="needs snapshot_at"):
        mot.train_single(st, cfg, [0, 1, 2], until_loss=target.to_numpy())


def test_the_single_transformers_losses_are_read_where_its_weights_are():
    """read_losses: each seed's losses at its matched weights, the ones the history recorded at that step."""
    st = mot.Setting(N=3, d=12, L=6, n_train=120, n_test=60)
    cfg = mot.SingleConfig(H=3, J=2, T=12, eta=0.5, record_every=1)
    run = mot.train_single(st, cfg, [0, 1], snapshot_at=range(13))
    trace = run.snapshots["train_loss"]
    m = mech.at_matched_loss(run, pd.Series({0: float(trace[4, 0]), 1: float(trace[9, 1])}))
    got = mech.read_losses(m)
    for seed, step in m.matched_steps.items():
        for q in ("train_loss", "test_loss", "test_acc"):
            assert got.loc[seed, q] == pytest.approx(float(run.at(q, step, seed).value.iloc[0]), rel=1e-12)
