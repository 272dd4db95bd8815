"""The janitor's sweep interval against driver_lost_s (ridepulse/settings.py): a pause of
UNHEARD_AFTER_SWEEPS sweeps is how the janitor tells the platform's outage from the drivers'
silence, so it must be shorter than the silence that loses a driver."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ridepulse.settings import UNHEARD_AFTER_SWEEPS, Settings


def test_the_defaults_leave_room_for_an_outage_to_be_seen() -> None:
    settings = Settings()
    assert settings.driver_sweep_interval_s * UNHEARD_AFTER_SWEEPS < settings.driver_lost_s


def test_a_sweep_too_slow_to_tell_an_outage_from_silence_is_refused() -> None:
    """Sweeping every 40 s with drivers lost after 120 s: an outage under 120 s was never
    recorded, so drivers who pinged at once after it still lost their rides."""
    with pytest.raises(ValidationError, match="driver_lost_s"):
        Settings(driver_lost_s=120, driver_sweep_interval_s=40)
    assert Settings(driver_lost_s=120, driver_sweep_interval_s=39).driver_sweep_interval_s == 39
