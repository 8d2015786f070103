"""Every config field rejects bad values with a ValueError naming the field, the value and the range."""
import re

import pytest

import mot_lib as mot

BAD = {
    mot.Setting: {
        "N": [1, 0, 2.5, True, 65], "d": [9, 3.0, 2000], "L": [2, "8"], "alpha": [0.0, -1.0, float("nan")],
        "beta": [-0.1, 101.0], "gamma": [-1.0], "sigma_xi": [-0.5, float("inf")], "noise_orthogonal": [1, "yes"],
        "rho": [-0.1, 1.0], "n_train": [1, 10.0], "n_test": [0],
        "alpha_range": [(0.0, 1.0), (2.0, 1.0), 3.0, (1.0,)], "beta_range": [(-1.0, 1.0), "ab"],
        "gamma_range": [(0.5, 101.0), (1, float("nan"))], "scale": [0.0, -10.0, 1e4],
    },
    mot.TrainConfig: {
        "M": [0, 1.5], "J": [0, 1.5, True, 2000], "shared_attention": ["yes", 1], "sigma0": [0.0, -1.0], "T": [0],
        "T1": [-1, 10_000], "T2": [10_000],
        "schedule": ["two_stage"], "stage1_opt": ["adam"], "stage2_opt": ["sgd"], "stage3_opt": [None],
        "eta1": [0.0, -0.1], "eta2": [0.0], "eta3": [-1.0, 1e13], "eta_router": [-0.5], "lam": [-1.0], "lam3": [-1.0, "1"],
        "attention": [0], "activation": ["tanh"], "query_pool": ["max"], "record_every": [0],
    },
    mot.SingleConfig: {
        "H": [0], "J": [0, 2.0], "sigma0": [0.0], "T": [0], "eta": [0.0], "opt": ["adam"],
        "activation": ["gelu"], "record_every": [-3], "signed_heads": [1, "yes"], "T1": [-1, 600], "T2": [-1, 501],
    },
}


def test_every_field_has_a_bad_value_listed():
    import dataclasses
    for cls, bad in BAD.items():
        assert set(bad) == {f.name for f in dataclasses.fields(cls)}, cls


@pytest.mark.parametrize("cls,field,value", [(c, f, v) for c, b in BAD.items() for f, vs in b.items() for v in vs])
def test_bad_value_rejected_with_name(cls, field, value):
    with pytest.raises(ValueError) as e:
        cls(**{field: value})
    msg = str(e.value)
    assert msg.startswith(f"{field}="), msg
    assert re.search(r"allowed|choose one of|wrong type|finite", msg), msg


def test_range_in_message():
    with pytest.raises(ValueError, match=r"N=1 is out of range; allowed \[2, 64\]"):
        mot.Setting(N=1)
    with pytest.raises(ValueError, match=r"T2=5 is out of range; allowed \[10, 500\]"):
        mot.TrainConfig(T1=10, T2=5)


def test_defaults_valid_and_replace_validates():
    cfg = mot.TrainConfig()
    assert cfg.replace(M=4).M == 4
    with pytest.raises(ValueError, match="M=0"):
        cfg.replace(M=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        cfg.replace(experts=4)


@pytest.mark.parametrize("seeds", [[], [1, 1], [-1], ["a"], 2.5])
def test_bad_seeds(seeds):
    with pytest.raises(ValueError, match="seeds"):
        mot.check_seeds(seeds)


def test_bad_input_fails_before_training(monkeypatch):
    """A bad seed list is rejected before any data is drawn or any step taken."""
    import mot_lib.engine.training as tr
    called = []
    monkeypatch.setattr(tr, "make_dataset", lambda *a, **k: called.append(1))
    with pytest.raises(ValueError):
        tr.train_mot(mot.Setting(), mot.TrainConfig(), [0, 0])
    assert not called
