"""TrainSchedule's cosine decay and warm-up (the additive extension used by the training configs)."""

from __future__ import annotations

import itertools
import math

import pytest

from empirical.svag import TrainSchedule, svag_schedule


def test_cosine_schedule_values() -> None:
    schedule = TrainSchedule(lr=0.4, steps=110, warmup_steps=10, cosine=True)
    assert schedule.lr_at(0) == pytest.approx(0.04) and schedule.lr_at(9) == pytest.approx(0.4)
    assert schedule.lr_at(60) == pytest.approx(0.2)  # half-way through the 100 decay steps: cos(pi/2) = 0
    assert schedule.lr_at(10 + 25) == pytest.approx(0.4 * (1 + math.cos(math.pi / 4)) / 2)
    values = [schedule.lr_at(k) for k in range(10, 110)]
    assert all(a > b for a, b in itertools.pairwise(values)) and values[-1] > 0


def test_cosine_excludes_milestones_and_survives_svag() -> None:
    with pytest.raises(ValueError, match="either cosine=True or milestones"):
        TrainSchedule(lr=0.1, steps=100, milestones=(50,), cosine=True)
    scaled = svag_schedule(TrainSchedule(lr=0.4, steps=100, warmup_steps=10, cosine=True), ell=4)
    assert scaled.cosine and scaled.steps == 400 and scaled.warmup_steps == 40
    assert scaled.lr_at(4 * 55) == pytest.approx(0.1 / 2)  # the same point of the cosine, at eta / ell


def test_step_schedule_unchanged_by_the_extension() -> None:
    schedule = TrainSchedule(lr=1.0, steps=10, milestones=(4, 8), lr_decay=0.5)
    assert [schedule.lr_at(k) for k in (0, 3, 4, 7, 8, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
