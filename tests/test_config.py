from dataclasses import dataclass, field
from typing import Literal

import pytest

from jdrl.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_config, parse_override, to_dict


@dataclass
class Inner:
    lr: float = 2e-5
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class Outer:
    name: str = "x"
    steps: int | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_overrides_are_typed_yaml_scalars():
    assert parse_override("inner.lr=1e-4") == (["inner", "lr"], 1e-4)
    assert parse_override("flag=true") == (["flag"], True)
    assert parse_override("steps=null") == (["steps"], None)
    assert parse_override("inner.sizes=[3, 4]") == (["inner", "sizes"], [3, 4])
    config = from_dict(Outer, apply_overrides({}, ["inner.lr=1e-4", "steps=10", "inner.mode=b"]))
    assert config.inner.lr == 1e-4 and config.steps == 10 and config.inner.mode == "b"


def test_bad_keys_and_values_name_the_dotted_key():
    with pytest.raises(ConfigError, match="inner.rate"):
        from_dict(Outer, {"inner": {"rate": 1}})
    with pytest.raises(ConfigError, match="inner.mode"):
        from_dict(Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ConfigError, match="steps"):
        from_dict(Outer, {"steps": "ten"})
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("no-equals-sign")


def test_yaml_files_inherit_with_base(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ninner:\n  lr: 0.1\n  mode: b\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ninner:\n  lr: 0.2\n")
    config = load_config(Outer, tmp_path / "child.yaml", ["flag=true"])
    assert config.name == "base" and config.inner.lr == 0.2 and config.inner.mode == "b" and config.flag


def test_round_trip_through_yaml(tmp_path):
    config = Outer(name="y", steps=3, inner=Inner(sizes=[5]))
    dump_yaml(config, tmp_path / "c.yaml")
    assert load_config(Outer, tmp_path / "c.yaml") == config
    assert to_dict(config)["inner"]["sizes"] == [5]


def test_missing_config_lists_presets():
    with pytest.raises(ConfigError, match="no config file or preset"):
        load_config(Outer, "no_such_preset")
