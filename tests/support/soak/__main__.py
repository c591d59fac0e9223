"""``python -m tests.support.soak``: the long soak (``make soak``); prints its table."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from tests.support.soak.config import SoakConfig, parse_faults
from tests.support.soak.report import table
from tests.support.soak.run import run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of writing")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="one more node with --workers N")
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--chat-rate", type=float, default=5.0)
    parser.add_argument("--status-rate", type=float, default=10.0)
    parser.add_argument("--faults", default="all", help="all, none or kinds joined by commas")
    parser.add_argument(
        "--fault-gap",
        type=float,
        nargs=2,
        default=(5.0, 15.0),
        metavar=("MIN", "MAX"),
        help="seconds between one fault's recovery and the next (uniform)",
    )
    parser.add_argument("--sentinels", action="store_true", help="master, replica, 3 sentinels")
    parser.add_argument("--lease", type=float, default=2.0, help="DBACK_REDIS_LEASE_SECONDS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = SoakConfig(
        duration=arguments.duration,
        nodes=arguments.nodes,
        workers=arguments.workers,
        viewers=arguments.viewers,
        chat_rate=arguments.chat_rate,
        status_rate=arguments.status_rate,
        faults=parse_faults(arguments.faults),
        fault_gap=tuple(arguments.fault_gap),
        sentinels=arguments.sentinels,
        lease_seconds=arguments.lease,
        seed=arguments.seed,
    )
    directory = arguments.logs or Path(tempfile.mkdtemp(prefix="dback-soak-"))
    result, faults = asyncio.run(run(config, directory))
    print(faults)
    print(table(result))
    for example in result.chat.examples:
        print("  " + example)
    print(f"logs: {directory}")
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
