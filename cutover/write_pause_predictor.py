"""Predicts how long writes will be held at the write switch, before holding them.

The pause is the sum of what the switch waits for, in order (``steps.py``):

* **hold**: the fence calls (two round trips) plus the writes already running on legacy
  finishing (``in_flight_s``, about one write's latency);
* **catch-up**: the follower applying everything legacy committed before the hold. Its lag
  is how far behind it runs, plus one apply batch and the polling step;
* **verify**: checking the rows written since the pre-verification (``PreVerifyWindow``
  verifies the rest before the hold). Its cost per row is measured now on a short recent
  window, and the rows are those the change rate adds during the pre-verification, the
  hold and the catch-up;
* **switch**: moving the proxy's write route and the two fences (control round trips).

The lag, change rate, verification time and control round trip are measured just before
the gate runs, so the prediction tracks the load (Vitess refuses a switch when lag exceeds
``--max-replication-lag-allowed``; Ghostferry's ``MaxExpectedDowntime`` aborts when the
predicted cutover verification is too long).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

APPLY_BATCH_S = 0.05  # the follower's MAX_BATCH_SECONDS: a change waits at most one batch
POLL_S = 0.02  # how often the catch-up drain looks at the follower's position
HOLD_CALLS = 2
SWITCH_CALLS = 6  # route_writes (weight + get weight x2) + forward + open


@dataclass(frozen=True)
class PauseInputs:
    """What was measured just before predicting."""

    lag_s: float
    change_rate_per_s: float
    window_rows: int
    verify_s: float
    pre_verify_s: float
    control_rtt_s: float
    in_flight_s: float = 0.05


@dataclass(frozen=True)
class PausePrediction:
    hold_s: float
    catch_up_s: float
    verify_s: float
    switch_s: float
    inputs: PauseInputs

    @property
    def total_s(self) -> float:
        return self.hold_s + self.catch_up_s + self.verify_s + self.switch_s

    def explain(self) -> str:
        return (
            f"hold {self.hold_s:.3f} + catch-up {self.catch_up_s:.3f} + verify "
            f"{self.verify_s:.3f} + switch {self.switch_s:.3f} s"
        )

    def as_json(self) -> dict[str, float | int]:
        return {
            "predicted_pause_s": round(self.total_s, 4),
            "hold_s": round(self.hold_s, 4),
            "catch_up_s": round(self.catch_up_s, 4),
            "verify_s": round(self.verify_s, 4),
            "switch_s": round(self.switch_s, 4),
            **{f"input_{k}": v for k, v in asdict(self.inputs).items()},
        }


def predict_pause(inputs: PauseInputs) -> PausePrediction:
    """The predicted write pause for ``inputs``; see the module note for the model."""
    hold = HOLD_CALLS * inputs.control_rtt_s + inputs.in_flight_s
    catch_up = max(0.0, inputs.lag_s) + APPLY_BATCH_S + POLL_S + inputs.control_rtt_s
    # The rows verified in the pause arrive during the pre-verification, the hold and the drain.
    rows = inputs.change_rate_per_s * (inputs.pre_verify_s + hold + catch_up)
    per_row = inputs.verify_s / inputs.window_rows if inputs.window_rows else 0.0
    verify = inputs.verify_s + per_row * max(0.0, rows - inputs.window_rows)
    switch = SWITCH_CALLS * inputs.control_rtt_s
    return PausePrediction(hold, catch_up, verify, switch, inputs)
