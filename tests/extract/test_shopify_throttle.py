"""The pacing arithmetic of the GraphQL cost bucket and the REST call bucket."""

from __future__ import annotations

import pytest

from extract.shopify_throttle import SAFETY_MARGIN_POINTS, CostThrottle, QueryCost, RestCallBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def report(
    requested: float, available: float, maximum: float = 1000.0, rate: float = 50.0
) -> QueryCost:
    return QueryCost.from_extensions(
        {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": requested,
                "throttleStatus": {
                    "maximumAvailable": maximum,
                    "currentlyAvailable": available,
                    "restoreRate": rate,
                },
            }
        }
    )


@pytest.mark.parametrize(
    ("available", "elapsed", "expected"),
    [
        pytest.param(900.0, 0.0, 0.0, id="enough-points"),
        pytest.param(100.0, 0.0, (300 + SAFETY_MARGIN_POINTS - 100) / 50, id="short-wait"),
        pytest.param(100.0, 2.0, (300 + SAFETY_MARGIN_POINTS - 200) / 50, id="restored-meanwhile"),
        pytest.param(0.0, 60.0, 0.0, id="bucket-refilled"),
    ],
)
def test_wait_is_missing_points_over_restore_rate(
    available: float, elapsed: float, expected: float
) -> None:
    clock = Clock()
    throttle = CostThrottle(clock)
    throttle.observe("q", report(300.0, available))
    clock.now += elapsed
    assert throttle.wait_before("q") == pytest.approx(expected)


def test_unknown_cost_or_bucket_means_no_wait() -> None:
    throttle = CostThrottle(Clock())
    assert throttle.wait_before("q") == 0.0
    throttle.observe("other", report(10.0, 0.0))
    assert throttle.wait_before("q") == 0.0


def test_query_dearer_than_the_bucket_waits_for_a_full_bucket() -> None:
    throttle = CostThrottle(Clock())
    throttle.observe("q", report(5000.0, 0.0))
    assert throttle.wait_before("q") == pytest.approx((1000 + SAFETY_MARGIN_POINTS) / 50)


def test_missing_throttle_status_keeps_the_last_known() -> None:
    throttle = CostThrottle(Clock())
    throttle.observe("q", report(300.0, 100.0))
    throttle.observe("q", QueryCost.from_extensions({"cost": {"requestedQueryCost": 300}}))
    assert throttle.status is not None and throttle.status.currently_available == 100.0


@pytest.mark.parametrize(
    ("header", "elapsed", "expected"),
    [
        pytest.param("1/40", 0.0, 0.0, id="empty"),
        pytest.param("39/40", 0.0, 0.5, id="one-below-cap"),
        pytest.param("40/40", 0.5, 0.5, id="full-one-leaked"),
        pytest.param("40/40", 1.0, 0.0, id="full-two-leaked"),
        pytest.param(None, 0.0, 0.0, id="no-header"),
    ],
)
def test_rest_bucket_waits_for_one_free_slot(
    header: str | None, elapsed: float, expected: float
) -> None:
    clock = Clock()
    bucket = RestCallBucket(leak_per_second=2.0, clock=clock)
    bucket.observe(header)
    clock.now += elapsed
    assert bucket.wait_before() == pytest.approx(expected)
