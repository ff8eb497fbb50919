"""One log format for every service: time, level, service, message."""

import logging
import sys


def setup(service: str, level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {service} %(message)s",
        force=True,
    )
