"""ServeSettings: how ``dept-vl serve`` batches and what it accepts (its flags are generated from these fields).
Needs nothing of the ``serve`` extra, so ``dept-vl --help`` works without it."""

from __future__ import annotations

from dataclasses import dataclass

from .._dataclass import check_int, check_number, setting
from ..errors import ConfigError


@dataclass
class ServeSettings:
    max_batch_size: int = setting(32, "requests answered together by one generate call at most")
    max_wait_ms: float = setting(10.0, "how long the first request of a batch waits for others to join it")
    api_key: str | None = setting(None, "require this key to predict ('Authorization: Bearer KEY' or 'X-API-Key: KEY')")
    max_upload_mb: float = setting(10.0, "larger requests are refused (413)")

    def __post_init__(self):
        check_int("max_batch_size", self.max_batch_size, 1)
        self.max_wait_ms = check_number("max_wait_ms", self.max_wait_ms, minimum=0)
        self.max_upload_mb = check_number("max_upload_mb", self.max_upload_mb, above=0)
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key must not be empty (leave it out to serve without a key)")
