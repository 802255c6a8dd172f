"""`configure_logging` and uvicorn's access log: the order a worker runs them in (uvicorn's, then ours)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import uvicorn
from scoring_service.logs import configure_logging

pytestmark = pytest.mark.unit

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = [
        (logging.getLogger(n), logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
        for n in LOGGERS
    ]
    level = logging.getLogger().level
    yield
    for logger, handlers, propagate in saved:
        logger.handlers[:] = handlers
        logger.propagate = propagate
    logging.getLogger().setLevel(level)


@pytest.mark.parametrize("access_log", [False, True])
def test_a_worker_keeps_the_access_log_setting(access_log: bool) -> None:
    # uvicorn's worker configures its logging from the config, then the app factory configures ours.
    uvicorn.Config(
        "scoring_service.app:app_from_env", access_log=access_log, log_config=None
    ).configure_logging()
    configure_logging("info", "json", access_log)
    # uvicorn's HTTP protocol logs access lines iff this holds, per connection.
    assert logging.getLogger("uvicorn.access").hasHandlers() is access_log
    assert logging.getLogger("uvicorn.error").hasHandlers()
