import math

import pytest

from hsrl.stats import summarize, t_quantile_975


@pytest.mark.parametrize(
    "dof, expected",
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (5, 2.5706), (9, 2.2622), (29, 2.0452), (999, 1.9623)],
)
def test_t_quantiles_match_tables(dof, expected):
    assert math.isclose(t_quantile_975(dof), expected, abs_tol=2e-3)


def test_summary_by_hand():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["n"] == 4
    std = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)
    assert math.isclose(s["std"], std)
    half = 3.1824 * std / 2
    assert math.isclose(s["ci95_high"], 2.5 + half, abs_tol=1e-3)
    assert math.isclose(s["ci95_low"], 2.5 - half, abs_tol=1e-3)
    assert math.isnan(summarize([5.0])["ci95_low"]) and summarize([])["n"] == 0
