"""Config: defaults, TOML loading, and a named error for every bad key or value."""

from __future__ import annotations

import pytest

from smug.config import Config
from smug.errors import ConfigError


def test_defaults_are_valid_and_round_trip():
    c = Config()
    assert c.backend == "ortools:scip" and c.gamma == 0.0 and c.ig_steps == 200
    assert Config.from_dict(c.to_dict()) == c


def test_toml_loading(tmp_path):
    p = tmp_path / "smug.toml"
    p.write_text('backend = "z3"\ntop_k = 25\ngamma = 0.3\nwindow = [2, 3]\n[backend_options]\nencoding = "x"\n')
    c = Config.from_toml(p)
    assert (c.backend, c.top_k, c.gamma, c.window) == ("z3", 25, 0.3, (2, 3))
    assert c.backend_options == {"encoding": "x"}
    q = tmp_path / "nested.toml"
    q.write_text("[smug]\ntop_k = 7\n")
    assert Config.from_toml(q).top_k == 7


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("top_k", 0, "top_k"),
        ("top_k", 2.5, "top_k"),
        ("gamma", 1.0, "gamma"),
        ("gamma", -0.1, "gamma"),
        ("gamma", float("nan"), "gamma"),
        ("scoring", "shap", "scoring"),
        ("window", 0, "window"),
        ("window", (2, 0), "window"),
        ("baseline", "blur", "baseline"),
        ("objective", "weight", "objective"),
        ("saliency", "mean", "saliency"),
        ("margin", 0.0, "margin"),
        ("time_limit", -5, "time_limit"),
        ("threads", 0, "threads"),
        ("num_solutions", 0, "num_solutions"),
        ("verbose", "yes", "verbose"),
        ("backend", "", "backend"),
    ],
)
def test_out_of_range_values_are_named(key, value, words):
    with pytest.raises(ConfigError, match=words):
        Config.from_dict({key: value})


def test_unknown_keys_suggest_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="'topk'.*Did you mean 'top_k'"):
        Config.from_dict({"topk": 3})
    with pytest.raises(ConfigError, match="gama"):
        Config().merged(gama=0.2)
    p = tmp_path / "bad.toml"
    p.write_text("top_k = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_toml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_toml(tmp_path / "missing.toml")
