"""Mask schedules: range, endpoints, monotonicity, the sine_linear formula, errors."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskgit_inpaint.schedules import NON_MONOTONE, SCHEDULES, gamma, get_schedule

NAMES = sorted(SCHEDULES)
MONOTONE = [n for n in NAMES if n not in NON_MONOTONE]
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def test_registry_is_consistent():
    assert "sine_linear" in SCHEDULES and "sine_linear" in NON_MONOTONE
    assert NON_MONOTONE <= set(SCHEDULES)
    assert {"linear", "cosine"} <= set(SCHEDULES)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None)
@given(r=unit)
def test_values_in_unit_interval(name, r):
    g = gamma(name, r)
    assert g.dtype == torch.float64
    assert 0.0 <= g.item() <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_gamma_is_zero_at_one(name):
    assert gamma(name, 1.0).item() == 0.0
    assert gamma(name, torch.tensor([1.0])).tolist() == [0.0]
    # past the end it is clamped to the end
    assert gamma(name, 1.5).item() == 0.0


@pytest.mark.parametrize("name", [n for n in MONOTONE if n != "constant"])
def test_gamma_starts_full(name):
    assert gamma(name, 0.0).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", MONOTONE)
@settings(max_examples=200, deadline=None)
@given(a=unit, b=unit)
def test_monotone_non_increasing(name, a, b):
    lo, hi = min(a, b), max(a, b)
    assert gamma(name, hi).item() <= gamma(name, lo).item()


@pytest.mark.parametrize("name", MONOTONE)
def test_monotone_on_a_dense_grid(name):
    g = gamma(name, torch.linspace(0, 1, 2001, dtype=torch.float64))
    assert (g[1:] <= g[:-1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_matches_scalar(name):
    r = torch.linspace(0, 1, 17, dtype=torch.float64)
    vec = gamma(name, r)
    assert vec.shape == r.shape
    assert torch.equal(vec, torch.stack([gamma(name, x.item()) for x in r]))


@settings(max_examples=300, deadline=None)
@given(r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False))
def test_sine_linear_formula(r):
    expected = (1 - r) * (1 - 0.75 * math.sin(2 * math.pi * r))
    assert gamma("sine_linear", r).item() == pytest.approx(min(max(expected, 0.0), 1.0), abs=1e-12)


def test_sine_linear_rises_somewhere():
    g = gamma("sine_linear", torch.linspace(0, 1, 1001, dtype=torch.float64))
    rises = (g[1:] > g[:-1]).nonzero()
    assert len(rises) > 0
    # it dips below linear around r = 0.25 and rises above it around r = 0.75
    assert gamma("sine_linear", 0.25).item() < 0.75 - 0.3
    assert gamma("sine_linear", 0.75).item() > 0.25 + 0.1


def test_known_values():
    assert gamma("linear", 0.25).item() == pytest.approx(0.75)
    assert gamma("cosine", 0.5).item() == pytest.approx(math.cos(math.pi / 4))
    assert gamma("square", 0.5).item() == pytest.approx(0.75)
    assert gamma("sqrt", 0.25).item() == pytest.approx(0.5)
    assert gamma("constant", 0.1).item() == 0.0
    if "arccos" in SCHEDULES:
        assert gamma("arccos", 0.5).item() == pytest.approx(math.acos(0.5) / (math.pi / 2))


@pytest.mark.parametrize("fn", [lambda: get_schedule("nope"), lambda: gamma("nope", 0.5)])
def test_unknown_name_lists_choices(fn):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert "nope" in msg
    for name in SCHEDULES:
        assert name in msg
