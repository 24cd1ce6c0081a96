"""The read sides' settings (``COS_READ_SIDE_*``), and the read sides themselves."""

from __future__ import annotations

from pydantic import Field

from cos.config import Part
from cos.readside._config import ReadSideConfig
from cos.readside._runner import RunnerTiming


class ReadSideSettings(Part):
    """Whether read sides run, where they are configured, and how failures are retried."""

    env_prefix = "COS_READ_SIDE_"

    enabled: bool = Field(False, description="deliver events to read sides")
    config: str | None = Field(
        None, description="YAML file, or folder of YAML files, configuring the read sides"
    )
    retry_min_seconds: float = Field(
        0.2, gt=0, description="first retry delay after a read handler failure, in seconds"
    )
    retry_max_seconds: float = Field(
        10.0, gt=0, description="longest retry delay for a failing read handler, in seconds"
    )
    # Read by cos.settings from COS_READ_SIDE_CONFIG or COS_READ_SIDE_CONFIG__*.
    read_sides: tuple[ReadSideConfig, ...] = Field((), exclude=True)

    @property
    def timing(self) -> RunnerTiming:
        """How each runner waits and retries."""
        return RunnerTiming(backoff_min=self.retry_min_seconds, backoff_max=self.retry_max_seconds)

    @property
    def enabled_read_sides(self) -> tuple[ReadSideConfig, ...]:
        """The read sides that run (none unless read sides are enabled)."""
        return tuple(r for r in self.read_sides if r.enabled) if self.enabled else ()
