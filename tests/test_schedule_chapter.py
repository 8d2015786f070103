"""Chapter 09's helpers (mot_lib.schedule_chapter) on small tables built by hand, so every verdict is known; and
the committed sweep is current."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from mot_lib.experiments import schedule
from mot_lib.experiments import sweeps
from mot_lib.claims import schedule_chapter as sc

matplotlib.use("Agg")
SEEDS = list(range(10))
NAN = math.nan


def _run(part, seeds=SEEDS, schedule="three_stage", T1=200, T2=300, T=500, M=16, lam=1.0, eta_router=0.5, **cols):
    """Rows of one configuration; ``cols`` gives per-seed columns (a list) or a constant."""
    df = pd.DataFrame({"part": part, "schedule": schedule, "T1": T1, "T2": T2, "T": T, "M": M, "lam": lam,
                       "eta_router": eta_router, "seed": seeds})
    defaults = {"final_test_loss": 0.5, "loss_at_200": 0.1, "steps_to_0.1": 100.0, "steps_to_0.01": NAN,
                "steps_to_0.001": NAN, "routing_acc_T1": 1.0, "label_weight_T2": 1.0, "final_routing_acc": 1.0,
                "t_spec": 10.0, "t_agree": NAN}
    for k, v in {**defaults, **cols}.items():
        df[k] = v
    return df


def _table():
    parts = [
        # schedules: three stages at 220 on every seed; joint at 400 on 6 seeds, never on 4; I_joint tied on 7 and
        # earlier on 3; joint_III never
        _run("schedules", schedule="three_stage", **{"steps_to_0.001": 220.0, "final_test_loss": 1e-5}),
        _run("schedules", schedule="joint", **{"steps_to_0.001": [400.0] * 6 + [NAN] * 4}),
        _run("schedules", schedule="I_joint", **{"steps_to_0.001": [220.0] * 7 + [210.0] * 3}),
        _run("schedules", schedule="joint_III"),
    ]
    for T1 in schedule.GRID_T1:          # grid: only T1 = 200 with a Stage II works
        for gap in schedule.GRID_GAP:
            fin = [0.5] * 10
            if T1 == 200 and gap > 0:
                fin = [1e-4] * 10
                if gap == 25:
                    fin = [1e-4] * 6 + [1e-3] + [0.5] * 3       # seed 6 ends exactly at eps: it works
                if gap == 100:
                    fin = [1e-4] * 9 + [0.5]            # seed 9 works at no T1 with T2 - T1 = 100
            parts.append(_run("grid", T1=T1, T2=T1 + gap, final_test_loss=fin,
                              routing_acc_T1=0.99 if T1 == 25 else 1.0, label_weight_T2=1.0 + gap / 50))
    for M, smallest in ((8, 50), (16, 100), (32, 200)):   # scaling: T1 proportional to M, as Proposition 1 says
        for T1 in schedule.SCALING_T1:
            parts.append(_run("scaling", M=M, T1=T1, T2=T1 + 100, T=T1 + 300,
                              final_test_loss=1e-4 if T1 >= smallest else 0.5))
    parts += [   # explore: no specialization without exploration; the gate first on 3 seeds with it
        _run("explore", T1=300, T2=300, T=300, lam=0.0, t_spec=NAN, t_agree=5.0),
        _run("explore", T1=300, T2=300, T=300, lam=1.0, t_spec=10.0, t_agree=[5.0] * 3 + [100.0] * 2 + [NAN] * 5),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def table():
    return _table()


def test_params_validate_with_clear_errors():
    P = sc.ScheduleParams()
    assert (P.seeds, P.eps, P.level, P.seed_share, P.quick) == ((0, 1), 1e-3, 0.95, 0.5, False)
    assert P.steps_col == "steps_to_0.001"
    with pytest.raises(ValueError, match=r"eps=0\.005 is not allowed.*0\.1, 0\.01, 0\.001"):
        sc.ScheduleParams(eps=0.005)
    with pytest.raises(ValueError, match="eps="):
        sc.ScheduleParams(eps="1e-3")
    with pytest.raises(ValueError, match="level="):
        sc.ScheduleParams(level=1.0)
    with pytest.raises(ValueError, match="seed_share="):
        sc.ScheduleParams(seed_share=1.0)
    with pytest.raises(ValueError, match=r"seeds=\[0, 57\].*\[57\] are not among them"):
        sc.ScheduleParams(seeds=[0, 57])


def test_live_jobs_are_the_tables_jobs_on_the_chosen_seeds():
    committed = schedule.jobs()
    jobs = sc.ScheduleParams(seeds=[3, 4]).live_jobs()
    assert [j.labels["part"] for j in jobs] == ["schedules", "grid", "explore"]
    for j in jobs:
        assert j.seeds == (3, 4)
        twin = [c for c in committed if c.labels == j.labels]
        assert twin and all(c.cfg == j.cfg and c.curves == j.curves for c in twin)
    quick = sc.ScheduleParams(quick=True, seeds=[5, 6, 7, 8]).live_jobs()
    assert len(quick) == 1 and quick[0].seeds == (5,)


def test_verdicts_follow_the_share_rule(table):
    rows = sc.verdict_rows(table, sc.ScheduleParams())
    got = [(r["measured"], r["verdict"]) for r in rows]
    assert got == [(1.0, "holds"), (0.0, "does not hold"), (1.0, "holds"),     # joint, I_joint, joint_III
                   (0.0, "does not hold"), (0.0, "does not hold"),             # half Stage I, no Stage II
                   (1.0, "holds"),                                             # M = 8 at T1 = 100
                   (0.7, "inconclusive"),                                      # t_spec < t_agree on 7 of 10
                   (0.0, "does not hold")]                                     # lam = 0 never specializes
    assert all(r["seeds"] == 10 and r["bound"] == "share of seeds > 0.5" for r in rows)
    assert "T1 = 100, T2 − T1 = 100" in rows[3]["claim"] and "T2 = T1 = 200" in rows[4]["claim"]
    assert "(7 of 10)" in rows[6]["test"]
    # the rule's threshold is a parameter: 7 of 10 clears a share of 0.3
    assert sc.verdict_rows(table, sc.ScheduleParams(seed_share=0.3))[6]["verdict"] == "holds"
    # eps is a parameter too: at 0.1 the joint schedule reaches it at the same step as three stages
    assert sc.verdict_rows(table, sc.ScheduleParams(eps=0.1))[0]["verdict"] == "does not hold"


def test_a_missing_configuration_raises_naming_it(table):
    with pytest.raises(ValueError, match="no runs of part 'grid'.*'T1': 100"):
        sc.verdict_rows(table[~((table.part == "grid") & (table.T1 == 100))], sc.ScheduleParams())
    with pytest.raises(ValueError, match="no rows of part 'explore'"):
        sc.explore_rows(table[table.part != "explore"])


def test_schedule_summary_counts_runs_beyond_the_budget(table):
    s = sc.schedule_summary(table, 1e-3).set_index("schedule")
    assert s.loc["three_stage", "steps"].value == 220 and s.loc["three_stage", "never"] == 0
    joint = s.loc["joint", "steps"]
    assert s.loc["joint", "never"] == 4 and joint.value == 400 and joint.hi == math.inf
    assert s.loc["joint_III", "steps"].value == math.inf
    shown = sc.schedule_display(s.reset_index(), 1e-3)
    assert shown.iloc[3, 2] == "> 500 [> 500, > 500]" and shown.iloc[1, 3] == "4 of 10"
    steps = sc.paired_steps(table, 1e-3)
    assert sc.compare_pairs(steps.three_stage, steps.I_joint) == {"faster": 0, "slower": 3, "equal": 7, "n": 10}
    assert sc.compare_pairs(steps.joint_III, steps.joint_III)["equal"] == 10   # never and never: a tie


def test_smallest_working_value_per_seed(table):
    g = sc.grid_rows(table)
    gap = sc.smallest_working(g[g.T1 == 200], "gap", 1e-3)
    assert gap.tolist() == [25.0] * 7 + [50.0] * 3
    b = sc.boundaries(table, 1e-3).set_index("question")
    first = b.iloc[0]
    assert first.none == 1 and first["median"].value == 200 and np.isnan(first["per seed"].iloc[9])
    assert b.iloc[1]["median"].value == 25
    reached = sc.grid_table(table, "reached", 1e-3)
    assert reached.loc[200].tolist() == [0, 7, 10, 9] and reached.loc[100].sum() == 0
    assert sc.grid_table(table, "label_weight_T2").loc[25, 100] == 3.0
    text = sc.grid_markdown(table, 1e-3)
    assert "appear only at T1 = 200" in text and "already 0.9900 at T1 = 25" in text


def test_scaling_against_proposition_1(table):
    tab = sc.scaling_table(table, 1e-3).set_index("M")
    assert tab.loc[8, "median"].value == 50 and tab.loc[8, "predicted"] == 50 and tab.loc[32, "predicted"] == 200
    checks = sc.scaling_checks(tab.reset_index(), table, 1e-3)
    assert [(c["M"], c["agrees"]) for c in checks] == [(8, True), (32, True)]
    # M = 8 needing the default M's T1 (not half of it) disagrees with T1 proportional to M
    slow = table.copy()
    sel = (slow.part == "scaling") & (slow.M == 8) & (slow.T1 < 100)
    slow.loc[sel, "final_test_loss"] = 0.5
    checks = sc.scaling_checks(sc.scaling_table(slow, 1e-3), slow, 1e-3)
    assert checks[0]["agrees"] is False and "later than predicted" in sc.scaling_markdown(
        sc.scaling_table(slow, 1e-3), slow, 1e-3)


def test_explore_medians_beyond_the_run(table):
    ta = sc.explore_table(table, "t_agree")
    assert ta.loc[0.0, 0.5] == 5 and ta.loc[1.0, 0.5] == math.inf       # 5 of 10 never: the median is beyond
    k, n = sc.explore_counts(table, "t_spec")
    assert (k.loc[0.0, 0.5], n.loc[0.0, 0.5], k.loc[1.0, 0.5]) == (0, 10, 10)


def test_answers_follow_the_verdicts(table):
    P = sc.ScheduleParams()
    text = sc.answers_markdown(table, sc.verdict_rows(table, P), P)
    assert "What is needed is a Stage I" in text                 # joint and joint_III slower, I_joint not
    assert "boundaries work?** Yes" in text
    assert "**Who commits first?** Unclear" in text
    assert "(T1, T2 − T1) = (200, 25), (200, 50), (200, 100)" in text and "Stage II 25 [25, 50]" in text


def test_live_markdown_flags_differences_beyond_the_tables_rounding():
    check = pd.DataFrame({"part": ["schedules"], "seed": [0], "final_test_loss (table)": [1e-4],
                          "final_test_loss (live)": [1e-4], "final_test_loss rel. diff": [2e-9],
                          "t_spec (table)": [NAN], "t_spec (live)": [NAN], "t_spec rel. diff": [0.0]})
    ok = sc.live_markdown(check)
    assert "largest relative difference is 2e-09" in ok and "differ by more" not in ok and "1 of the numbers" in ok
    check["final_test_loss rel. diff"] = 1e-6
    assert "differ by more than the table's rounding" in sc.live_markdown(check)
    assert sc.live_display(check).columns[:2].tolist() == ["part", "seed"]


def test_heatmap_marks_runs_beyond_the_budget():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    sc.heatmap(ax, pd.DataFrame([[10.0, math.inf]], index=[1.0], columns=[0.1, 0.5]), lambda v: f"{v:g}", "t", "x",
               "y", beyond_text="> 300", mark=(1.0, 0.5))
    texts = [t.get_text() for t in ax.texts]
    plt.close(fig)
    assert texts == ["10", "> 300"]


def test_the_committed_table_is_current():
    rows, curves, meta = sweeps.load(schedule.NAME)
    assert sweeps.why_stale(meta, ("schedule",)) is None
    assert set(rows.part) == {"schedules", "grid", "scaling", "explore"} and not rows.diverged.any()
