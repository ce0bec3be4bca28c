"""Structured JSON logs: one line per event, written to stdout (or a file) by structlog."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog


def configure(stream: TextIO = sys.stdout) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> Any:
    return structlog.get_logger(name)
