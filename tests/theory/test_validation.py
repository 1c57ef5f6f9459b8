"""theory.validation: one message format, booleans/complex/NaN never numbers, and the scenarios of issue 13."""

from __future__ import annotations

import numpy as np
import pytest

from theory.params import MomentumParams, check_learning_rate
from theory.quadratic import check_quadratic, stationary_covariance
from theory.validation import (
    ParameterTypeError,
    as_real_array,
    check_bool,
    check_choice,
    check_id_list,
    check_in_unit_interval,
    check_int,
    check_int_list,
    check_options,
    check_positive,
    check_positive_int,
)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1j, np.complex128(0.5), "0.1", b"1", None, [0.1]])
def test_non_reals_are_type_errors_naming_the_parameter(value: object) -> None:
    with pytest.raises(ParameterTypeError, match=r"^eta must be a finite number in \(0, inf\), got "):
        check_positive(value, "eta")


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_out_of_range_reals_are_value_errors(value: float) -> None:
    with pytest.raises(ValueError, match=r"eta must be a finite number in \(0, inf\), got") as info:
        check_positive(value, "eta")
    assert not isinstance(info.value, TypeError)


def test_type_errors_are_also_value_errors_so_old_callers_still_catch_them() -> None:
    with pytest.raises(ValueError):
        check_positive(True, "eta")
    with pytest.raises(TypeError):
        check_positive(True, "eta")


def test_real_numbers_of_any_kind_are_accepted_as_floats() -> None:
    for value in (1, 0.5, np.float32(0.5), np.int64(3), np.array(0.25)):
        out = check_positive(value, "x")
        assert type(out) is float and out == float(value)
    assert check_in_unit_interval(0.0, "beta") == 0.0
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\), got 1.0"):
        check_in_unit_interval(1.0, "beta")


def test_integers_are_strict() -> None:
    assert check_positive_int(np.int32(4), "n") == 4 and type(check_positive_int(np.int32(4), "n")) is int
    for bad in (True, 2.0, 2.5, "3", None):
        with pytest.raises(ParameterTypeError, match=r"n must be an integer >= 1, got"):
            check_positive_int(bad, "n")
    with pytest.raises(ValueError, match=r"n must be an integer in \[2, 5\] \(why\), got 9"):
        check_int(9, "n", minimum=2, maximum=5, note="why")


def test_bools_are_only_bools() -> None:
    assert check_bool(np.bool_(False), "flag") is False
    for bad in ("no", "false", 0, 1, None):
        with pytest.raises(ParameterTypeError, match=r"flag must be true or false \(a bool\)"):
            check_bool(bad, "flag")


def test_lists_strings_and_choices() -> None:
    assert check_int_list([3, 4], "model.hidden") == (3, 4)
    with pytest.raises(ValueError, match=r"model.hidden\[0\] must be an integer >= 1, got 0"):
        check_int_list([0], "model.hidden")
    with pytest.raises(ValueError, match=r"model.hidden\[0\] must be an integer >= 1, got -5"):
        check_int_list([-5], "model.hidden")
    with pytest.raises(ParameterTypeError, match=r"model.hidden must be a list of integers >= 1, got 'abc'"):
        check_int_list("abc", "model.hidden")
    assert check_id_list("svag", "only") == ["svag"] and check_id_list(None, "only") is None
    with pytest.raises(ParameterTypeError, match="only must hold ids"):
        check_id_list(["svag", 3], "only")
    with pytest.raises(ValueError, match=r"unit must be one of \['epoch', 'step'\], got 'hour'"):
        check_choice("hour", "unit", ("epoch", "step"))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['x'\] for model 'mlp'; allowed: \['hidden'\]"):
        check_options({"x": 1}, {"hidden": check_int_list}, "model", label="model 'mlp'")


def test_messages_are_one_line_even_for_arrays() -> None:
    with pytest.raises(ParameterTypeError) as info:
        as_real_array(np.eye(3) * 1j, "H")
    assert "\n" not in str(info.value) and "complex" in str(info.value)


def test_momentum_params_reject_booleans() -> None:
    with pytest.raises(ValueError, match=r"eta \(effective learning rate\) must be .* got True \(a bool\)"):
        MomentumParams(eta=True)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\) \(a real number\), got False \(a bool\)"):
        MomentumParams(eta=0.1, beta=False)
    with pytest.raises(ValueError, match=r"c \(momentum scaling constant\) must be a finite number in \(0, inf\)"):
        MomentumParams.from_alpha(0.1, 0.5, c=True)
    with pytest.raises(ValueError, match=r"learning rate must be a finite number in \(0, inf\)"):
        check_learning_rate(float("nan"))


def test_complex_or_boolean_matrices_are_rejected_not_truncated() -> None:
    with pytest.raises(ParameterTypeError, match="H must be an array of real numbers, got complex entries"):
        check_quadratic(np.diag([1.0 + 1e-3j, 2.0]), np.eye(2))
    with pytest.raises(ParameterTypeError, match="Sigma must be an array of real numbers, got boolean entries"):
        check_quadratic(np.eye(2), np.eye(2, dtype=bool))
    with pytest.raises(ParameterTypeError, match="H must be an array of real numbers"):
        stationary_covariance([[1.0, 2.0], [3.0]], np.eye(2), 0.1)


def test_time_steps_and_scales_are_named_as_such_not_as_learning_rates() -> None:
    from theory.integrators import EulerMaruyama
    from theory.problems import log_cosh_well
    from theory.sde import sgd_sde, sgdm_sde

    sde = sgd_sde(log_cosh_well(), 0.1)
    with pytest.raises(ValueError, match=r"^dt \(time step\) must be a finite number in \(0, inf\), got True"):
        EulerMaruyama(sde, True)
    with pytest.raises(ValueError, match=r"^c \(momentum scaling constant\) must be"):
        sgdm_sde(log_cosh_well(), 0.1, 0.5, c=-1.0)


def test_huge_integers_and_broken_reprs_still_give_the_documented_errors() -> None:
    class BrokenRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(ValueError, match=r"eta must be a finite number in \(0, inf\), got 1000"):
        check_positive(10**400, "eta")  # float(10**400) would raise OverflowError
    with pytest.raises(ParameterTypeError, match="got <BrokenRepr object>"):
        check_positive(BrokenRepr(), "eta")
