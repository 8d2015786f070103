import numpy as np
import pandas as pd
import pytest
import torch

import mot_lib as mot
from mot_lib.claims import convergence as cv


def test_params_validation():
    with pytest.raises(ValueError, match=r"^decades=2 is out of range"):
        cv.Theorem1Params(decades=2)
    with pytest.raises(ValueError, match=r"^mot_eps_max=0 is out of range"):
        cv.Theorem1Params(mot_eps_max=0)
    with pytest.raises(ValueError, match=r"^gd_etas=-1"):
        cv.Theorem1Params(gd_etas=(0.1, -1.0))
    with pytest.raises(ValueError, match=r"^T2=100 is out of range"):
        cv.Theorem1Params(T1=200, T2=100)
    with pytest.raises(ValueError, match=r"^single_eta=0"):
        cv.Theorem1Params(single_eta=0.0)
    with pytest.raises(ValueError, match=r"^single_eta='best' is not allowed; give 'tuned'"):
        cv.Theorem1Params(single_eta="best")
    with pytest.raises(ValueError, match=r"^n_train=1"):
        cv.Theorem1Params(n_train=1)
    with pytest.raises(ValueError, match="unknown parameter"):
        mot.book.params_for("05_theorem1", eps=1e-3)
    P = cv.Theorem1Params()
    g = P.eps_grid(1e-2)
    assert len(g) == 13 and g[0] == pytest.approx(1e-2) and g[-1] == pytest.approx(1e-5)
    assert P.mot_config("gd").T == P.T2 + P.gd_steps and P.mot_config("ngd").stage3_opt == "ngd"
    assert cv.Theorem1Params(quick=True).mot_config("gd").T < P.mot_config("gd").T


def test_iterations_to_eps_interpolates_and_censors():
    steps = np.array([0, 10, 20, 30])
    loss = np.array([1.0, 1e-1, 1e-2, 2e-2])   # last point rises: the running minimum keeps 1e-2
    n = cv.iterations_to_eps(steps, loss, [2.0, 1e-1, 10 ** -1.5, 1e-3], start=0)
    assert n[0] == 0.0 and n[1] == pytest.approx(10.0) and n[2] == pytest.approx(15.0)
    assert np.isnan(n[3])
    assert cv.iterations_to_eps(steps, loss, [1e-2], start=10)[0] == pytest.approx(10.0)


def _synthetic(law):
    """Iteration counts following ``law(eps)`` for 8 seeds with 1% seed noise (the order-statistic interval of a
    median needs 6 or more)."""
    rows = []
    for s in range(8):
        for eps in 1e-2 * 10.0 ** (-np.arange(13) / 4):
            rows.append({"model": "m", "seed": s, "eps": eps, "inv_eps": 1 / eps,
                         "log10_inv_eps": np.log10(1 / eps), "iterations": law(eps) * (1 + 0.01 * s)})
    return pd.DataFrame(rows)


def test_growth_exponent_separates_the_laws():
    log_law = cv.rate_fits(_synthetic(lambda e: 500 + 40 * np.log10(1 / e)))
    inv_law = cv.rate_fits(_synthetic(lambda e: 300 + 0.5 / e))
    name = "growth exponent k (per-decade iterations vs 1/eps)"
    assert abs(log_law[name][0].value) < 1e-6 and abs(inv_law[name][0].value - 1) < 1e-6
    assert log_law["iterations per decade (linear in log10 1/eps)"][0].value == pytest.approx(40 * 1.03, rel=0.05)
    assert log_law["iterations per decade (linear in log10 1/eps)"][1] > 0.8
    assert inv_law["slope in 1/eps (linear in 1/eps)"][1] > 0.8
    assert cv.growth_row("c", "b", log_law, cv.ACCEPT_LOG)["verdict"] == "holds"
    assert cv.growth_row("c", "b", inv_law, cv.ACCEPT_LOG)["verdict"] == "does not hold"
    assert cv.growth_row("c", "b", inv_law, cv.ACCEPT_INV_THETA)["verdict"] == "holds"
    assert cv.growth_row("c", "b", log_law, cv.ACCEPT_INV_THETA)["verdict"] == "does not hold"


def test_unreached_grid_is_inconclusive():
    df = _synthetic(lambda e: np.nan)
    f = cv.rate_fits(df)
    row = cv.growth_row("c", "b", f, cv.ACCEPT_LOG)
    assert row["verdict"] == "inconclusive" and np.isnan(row["measured"])


def test_tiny_run_measures_the_mot():
    P = cv.Theorem1Params(seeds=(0, 1), T1=40, T2=50, gd_steps=20, mot_every=5)
    st = mot.Setting(N=3, d=12, L=6, n_train=200, n_test=400)
    run = mot.train_mot(st, P.mot_config("ngd", steps=30), [0, 1])
    df = cv.iterations_table(run, P.eps_grid(0.3), start=P.T2, label="MoT")
    assert set(df.seed) == {0, 1} and len(df) == 2 * 13
    ok = df.iterations.dropna()
    assert (ok >= 0).all() and (ok <= 30).all()


def test_plain_gd_params_are_checked():
    with pytest.raises(ValueError, match=r"^tune_seeds=\[0, 100\] share seeds"):
        cv.Theorem1Params(tune_seeds=(0, 100))
    with pytest.raises(ValueError, match=r"^gd_eta_grid=\[\] is empty"):
        cv.Theorem1Params(gd_eta_grid=())
    with pytest.raises(ValueError, match=r"^gd_eta_grid=0"):
        cv.Theorem1Params(gd_eta_grid=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"^lam3=-1"):
        cv.Theorem1Params(lam3=-1.0)
    with pytest.raises(ValueError, match=r"^mot_eps_max=0"):
        cv.Theorem1Params(mot_eps_max=0.0)
    with pytest.raises(ValueError, match=r"^gd_eta_grid=10000000000000.0 is out of range"):
        cv.Theorem1Params(gd_eta_grid=(1.0, 1e13))
    c = cv.Theorem1Params().mot_config("gd", lam3=0.0)
    assert c.lam3 == 0.0 and cv.Theorem1Params().mot_config("gd").lam3 is None


def test_the_step_is_chosen_on_the_tuning_seeds(monkeypatch):
    """The rule: the most decades the median training loss falls from the first Stage III step to tune_steps, among
    the steps that do not diverge; a diverged step is skipped (here the largest, made to diverge), and every step
    diverging is a clear error."""
    P = cv.Theorem1Params(seeds=(0,), tune_seeds=(5, 6), T1=20, T2=30, tune_steps=20,
                          gd_eta_grid=(0.01, 0.1, 10.0, 1e4))
    st = mot.Setting(N=3, d=12, L=6, n_train=100, n_test=100)
    real = cv.train_mot

    def diverge_at_largest(setting, cfg, seeds, **kw):
        if cfg.eta3 == 1e4:
            raise mot.DivergenceError("made to diverge")
        return real(setting, cfg, seeds, **kw)
    monkeypatch.setattr(cv, "train_mot", diverge_at_largest)
    eta, tab = cv.tune_step(P, st)
    assert list(tab.diverged) == [False, False, False, True] and list(tab.eta3) == [0.01, 0.1, 10.0, 1e4]
    ok = tab[~tab.diverged]
    assert eta == float(ok.eta3[ok[cv.TUNE_BY].idxmax()]) and list(tab.chosen) == list(tab.eta3 == eta)

    def diverge_in_stage3(setting, cfg, seeds, **kw):     # the shared Stages I-II (to T2) still run
        if cfg.T > P.T2:
            raise mot.DivergenceError("x")
        return real(setting, cfg, seeds, **kw)
    monkeypatch.setattr(cv, "train_mot", diverge_in_stage3)
    with pytest.raises(ValueError, match="every step diverged on tune_seeds"):
        cv.tune_step(P, st)


class _Losses:
    """A stand-in for a Run: its losses by step (rows) and seed (columns), Stage III from T2."""
    model = "mot"

    def __init__(self, T2, frame):
        self.cfg = mot.TrainConfig(T1=0, T2=T2, T=T2 + 100)
        self.frame = frame

    def scalar(self, quantity):
        return self.frame


def test_the_tuning_rewards_the_tail_not_where_the_first_step_lands(monkeypatch):
    """A step whose first update lands ten decades lower and then stalls loses to one that keeps falling: the rule
    is the decades gained after the first step, not the lowest loss (which chose the grid's edge)."""
    P = cv.Theorem1Params(seeds=(0,), tune_seeds=(5, 6), T1=20, T2=30, tune_steps=20, gd_eta_grid=(0.1, 10.0))
    st = mot.Setting(N=3, d=12, L=6, n_train=100, n_test=100)
    real = cv.train_mot
    t = np.arange(30, 51)
    tails = {0.1: 1e-3 * 10.0 ** -(np.arange(21) / 10), 10.0: np.r_[1e-3, np.full(20, 1e-13)]}

    def stub(setting, cfg, seeds, **kw):
        if cfg.T <= P.T2:
            return real(setting, cfg, seeds, **kw)
        return _Losses(P.T2, pd.DataFrame({s: tails[cfg.eta3] for s in seeds}, index=t))
    monkeypatch.setattr(cv, "train_mot", stub)
    eta, tab = cv.tune_step(P, st)
    assert eta == 0.1 and list(tab.chosen) == [True, False]
    np.testing.assert_allclose(tab[cv.TUNE_BY], [1.9, 0.0])
    assert tab["median training loss after tune_steps"].iloc[1] < tab["median training loss after tune_steps"].iloc[0]
    assert cv.at_grid_edge(0.1, P.gd_eta_grid) and not cv.at_grid_edge(1e4, cv.Theorem1Params().gd_eta_grid)


def test_tail_decades_count_from_the_first_step_and_stop_at_the_floor():
    steps = [10, 11, 12, 13]
    f = pd.DataFrame({0: [1e-3, 1e-5, 1e-6, 1e-7], 1: [1e-3, 0.0, 0.0, 0.0], 2: [1e-3, 1e-290, 0.0, 1e-200],
                      3: [1e-3, 1e-4, 1e-6, 1e-5]}, index=steps)
    d = cv.tail_decades(_Losses(10, f))
    np.testing.assert_allclose(d.to_numpy(), [2.0, 0.0, 10.0, 2.0])    # from step 11; the floor 1e-300; the best
    with pytest.raises(ValueError, match=r"no train_loss record at the first Stage III step \(T2 \+ 1 = 11\)"):
        cv.tail_decades(_Losses(10, f.drop(index=11)))


def test_the_theorem_grid_starts_below_each_seeds_first_step():
    """first_step_table: seed 0 drops four decades in its first step, seed 1 one; each grid starts one grid step
    below that seed's own loss at T2 + 1, counted from there, so the first step's jump is not a crossing."""
    P = cv.Theorem1Params(decades=3.0, per_decade=2)
    t = np.arange(10, 41)
    f = pd.DataFrame({0: np.r_[1e-2, 1e-6 * 0.5 ** np.arange(30)], 1: np.r_[1e-2, 1e-3 * 0.5 ** np.arange(30)]},
                     index=t)
    df = cv.first_step_table(_Losses(10, f), P, label="x")
    for seed, l1 in ((0, 1e-6), (1, 1e-3)):
        g = df[df.seed == seed]
        np.testing.assert_allclose(g.eps.to_numpy(), l1 * 10.0 ** (-np.arange(1, 8) / 2))
        # loss l1 * 2^-n at n steps after T2 + 1: eps = l1 * 10^(-j/2) is reached after j/2 * log2(10) steps
        np.testing.assert_allclose(g.iterations.to_numpy(), np.arange(1, 8) / 2 * np.log2(10), rtol=1e-9)
    with pytest.raises(ValueError, match=r"no test_loss record at the first Stage III step \(T2 \+ 1 = 11\)"):
        cv.first_step_table(_Losses(10, f.drop(index=11)), P)
    f[1] = np.r_[1e-2, np.zeros(30)]               # at float64's floor after its first step: nothing to measure
    assert cv.first_step_table(_Losses(10, f), P).query("seed == 1").iterations.isna().all()


def test_a_diverged_seed_counts_above_every_k():
    """rate_fits(df, diverged): the diverged seeds enter the median as +inf, not left out (survivor bias)."""
    rows = []
    for seed, k in enumerate([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]):
        eps = 1e-3 * 10.0 ** -np.arange(5)
        per = 10.0 * (1 / eps) ** k / (1 / eps[0]) ** k
        rows += [{"model": "m", "seed": seed, "eps": e, "inv_eps": 1 / e, "log10_inv_eps": np.log10(1 / e),
                  "iterations": n} for e, n in zip(eps, np.cumsum(per))]
    df = pd.DataFrame(rows)
    name = "growth exponent k (per-decade iterations vs 1/eps)"
    est, _, n = cv.rate_fits(df)[name]
    est2, _, n2 = cv.rate_fits(df, diverged=(7, 8, 9))[name]
    assert n == 7 and n2 == 10 and est.value < est2.value and np.isinf(est2.hi)
    assert est2.value == pytest.approx(np.median([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, np.inf, np.inf, np.inf]),
                                       abs=0.02)
    row = cv.growth_row("c", "b", cv.rate_fits(df, diverged=(7, 8, 9)), cv.ACCEPT_LOG, diverged=(7, 8, 9))
    assert "3 seed(s) diverged at this step and count above every k (7, 8, 9)" in row["note"]


def test_a_diverging_seed_is_left_out_and_named(monkeypatch):
    """train_surviving: the seeds a DivergenceError names leave and the others train again together, with the
    numbers they have without them; every seed diverging is a clear error, and an error naming no seed is raised."""
    st = mot.Setting(N=3, d=12, L=6, n_train=100, n_test=100)
    cfg = mot.TrainConfig(M=3, T1=4, T2=8, T=12, record_every=4)
    real = cv.train_mot
    calls = []

    def seed_6_diverges(setting, c, seeds, **kw):
        calls.append(list(seeds))
        if 6 in seeds:
            raise mot.DivergenceError("seed 6", seeds=[6])
        return real(setting, c, seeds, **kw)
    monkeypatch.setattr(mot.engine.training, "train_mot", seed_6_diverges)
    data = mot.make_dataset(st, [5, 6, 7])
    run, gone = cv.train_surviving(st, cfg, [5, 6, 7], data)
    assert calls == [[5, 6, 7], [5, 7]]
    assert gone == [6] and run.seeds == [5, 7] and run.diverged == [6] and run.params["W"].shape[0] == 2
    alone = real(st, cfg, [5, 7], data=mot.make_dataset(st, [5, 7]))
    assert all(torch.equal(run.params[k], alone.params[k]) for k in run.params)
    assert sorted(run.scalar("test_loss").columns) == [5, 7]
    fits = {"growth exponent k (per-decade iterations vs 1/eps)": (mot.stats.Estimate(1.0, 0.9, 1.1), 1.0, 2)}
    row = cv.growth_row("c", "b", fits, cv.ACCEPT_LOG, id="theorem1.mot_gd", diverged=gone)
    assert "1 seed(s) diverged at this step and count above every k (6)" in row["note"]
    monkeypatch.setattr(mot.engine.training, "train_mot",
                        lambda st_, c, seeds, **k: (_ for _ in ()).throw(mot.DivergenceError("x", seeds=seeds)))
    with pytest.raises(mot.DivergenceError, match="every seed diverged"):
        cv.train_surviving(st, cfg, [5, 6], mot.make_dataset(st, [5, 6]))
    monkeypatch.setattr(mot.engine.training, "train_mot",
                        lambda *a, **k: (_ for _ in ()).throw(mot.DivergenceError("unnamed")))
    with pytest.raises(mot.DivergenceError, match="unnamed"):
        cv.train_surviving(st, cfg, [5, 6], mot.make_dataset(st, [5, 6]))


def test_an_unstable_two_head_step_is_blank_not_chaotic():
    """At step 1000 the two-headed comparator's loss grows (to about 10-50 on two of the three tuning seeds):
    a chaotic value that differs between CPUs.  The tuning table marks it and leaves the loss blank."""
    P = cv.Theorem1Params(quick=True, two_head_eta_grid=(100.0, 1000.0), two_head_tune_T=300)
    eta, tab = cv.tune_two_head(P, P.setting())
    assert eta == 100.0
    assert tab["diverged or unstable"].tolist() == [False, True]
    assert np.isfinite(tab.iloc[0, 1]) and np.isnan(tab.iloc[1, 1])


def test_the_chapter_runs_are_the_same_on_worker_processes():
    """``run_all`` spreads its independent groups of runs over worker processes (``MOT_CHAPTER_JOBS``): every run,
    history and tuning table is bit-identical to the in-process run (each run is one thread with the pinned
    numerics, and every seed draws its own data and streams), however the theorem's seeds are split into jobs."""
    import torch
    from mot_lib.claims import convergence as cv
    P = mot.book.params_for("05_theorem1", quick=True, seeds=[0, 1, 2, 3], compare_seeds=2, side_seeds=1,
                            variant_seeds=2)
    a, b = cv.run_all(P, jobs=1), cv.run_all(P, jobs=2, chunk=2)      # b: the verdict seeds' Stage III in two jobs
    assert cv.seed_chunks(5, 2) == [[0, 1], [2, 3, 4]] and cv.seed_chunks(1, 16) == [[0]]
    assert list(a["runs"]) == list(b["runs"])
    def rows(h):   # a run joined from jobs holds each job's rows in a block: compare the rows, not their order
        return h.sort_values(["step", "quantity", "seed", "expert", "i", "j"], kind="stable").reset_index(drop=True)
    for k in a["runs"]:
        ra, rb = a["runs"][k], b["runs"][k]
        assert rows(ra.history).equals(rows(rb.history)), k
        for q in ("test_loss", "train_loss"):
            assert ra.scalar(q).equals(rb.scalar(q)), (k, q)
        assert all(torch.equal(ra.params[p], rb.params[p]) for p in ra.params), k
    assert a["tuning"].equals(b["tuning"]) and a["two_head_tuning"].equals(b["two_head_tuning"])
    assert (a["eta3"], a["two_head_eta"]) == (b["eta3"], b["two_head_eta"])
    assert all(a["gd_sweep"][e].history.equals(b["gd_sweep"][e].history) for e in a["gd_sweep"])
    assert all(a["single_gd"][k].history.equals(b["single_gd"][k].history) for k in a["single_gd"])


def test_seed_rates_flags_a_seed_that_crosses_its_grid_between_two_records():
    """seed_rates: a seed whose reached grid points all lie within one record interval has k = 0 from the
    interpolation alone and is flagged unresolved; a seed spread over many records is resolved; its k is the one the
    verdict's median reads (stats.per_seed_fits on per_decade_table)."""
    eps = 1e-2 * 10.0 ** (-np.arange(13) / 4)
    rows = []
    for seed, its in ((0, 100 + 2 * np.log10(1e-2 / eps)),            # 6 iterations across the grid
                      (1, 100 + 0.05 / eps)):                          # a 1/eps law over thousands
        for e, n in zip(eps, its):
            rows.append({"model": "m", "seed": seed, "eps": e, "inv_eps": 1 / e, "log10_inv_eps": np.log10(1 / e),
                         "iterations": n})
    df = pd.DataFrame(rows)
    r = cv.seed_rates(df, every=20)
    assert list(r.resolved) == [False, True] and list(r["grid points reached"]) == [13, 13]
    assert abs(r.loc[0, "growth exponent k"]) < 1e-9 and abs(r.loc[1, "growth exponent k"] - 1) < 1e-6
    per_seed = mot.stats.per_seed_fits(cv.per_decade_table(df), "inv_eps", "per_decade", mot.stats.fit_power_law)
    np.testing.assert_allclose(r["growth exponent k"].to_numpy(), per_seed.to_numpy())
    assert cv.seed_rates(df, every=5).resolved.all()


def test_at_step_reads_the_theorem_run_at_another_step_by_the_same_rules():
    """at_step: the chapter's plain-GD run at a given step, read by rate_fits and seed_rates (one row per loss)."""
    P = cv.Theorem1Params(quick=True, seeds=(0, 1, 2), T1=20, T2=30, gd_steps=200, n_train=100, n_test=100)
    tab = cv.at_step(P, 1.0)
    assert list(tab["loss"]) == ["expected", "training"] and (tab["eta3"] == 1.0).all()
    assert tab["seeds counted"].between(0, 3).all() and (tab["diverged"] == 0).all()
    assert (tab["within one step"] <= tab["seeds counted"]).all()
    df = cv.measure(P, {cv.GD: cv._theorem_part(P, 1.0, [0, 1, 2], cv.branch_point(
        P, P.setting(), [0, 1, 2], mot.make_dataset(P.setting(), [0, 1, 2])))[0]})
    est = cv.rate_fits(df[df.model == cv.GD])["growth exponent k (per-decade iterations vs 1/eps)"][0]
    assert tab["median k"].iloc[0] == est.value or (np.isnan(est.value) and np.isnan(tab["median k"].iloc[0]))
