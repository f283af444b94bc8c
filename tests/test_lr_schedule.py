"""The learning-rate rules: the released step decay and the cosine option."""

import math

import pytest

from jdrl.errors import ConfigError
from jdrl.training import load_train_config
from jdrl.training.state import learning_rate


def test_step_decay_halves_every_interval_as_released():
    config = load_train_config("synthetic", ["optim.lr=1e-3", "optim.decay_every=10", "optim.decay_factor=0.5"])
    assert [learning_rate(config, p, False) for p in (0, 9, 10, 25)] == [1e-3, 1e-3, 5e-4, 2.5e-4]


def test_cosine_goes_from_lr_to_min_lr_over_the_schedule_and_stays_there():
    config = load_train_config("synthetic", ["optim.decay=cosine", "optim.lr=1e-3", "optim.min_lr=1e-5",
                                             "schedule.unit=step", "schedule.total=200"])
    rates = [learning_rate(config, p, False) for p in range(0, 260, 10)]
    assert rates[0] == pytest.approx(1e-3)
    assert learning_rate(config, 100, False) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert learning_rate(config, 50, False) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4)) / 2)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == rates[20] == pytest.approx(1e-5)


def test_the_reblur_only_phase_keeps_its_own_rate_under_cosine():
    config = load_train_config("synthetic", ["optim.decay=cosine", "optim.reblur_only_lr=3e-4"])
    assert learning_rate(config, 5, True) == 3e-4


def test_an_unknown_decay_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.decay"):
        load_train_config("synthetic", ["optim.decay=linear"])
