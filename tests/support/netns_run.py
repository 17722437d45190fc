"""The run side of the hosts-apart test: runs `netns_flows.hosts_apart` on Redis workers
and prints the result as one JSON line. The test starts it inside its own network
namespace (the pytest process stays in the root namespace):

    python tests/support/netns_run.py URL NAMESPACE LEASE RUN_ID MARKERS
"""

from __future__ import annotations

import argparse
import asyncio
import json

from netns_flows import hosts_apart

from graflow_async import run
from graflow_async.transports.redis import RedisStreamsTransport


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("lease", type=float)
    parser.add_argument("run_id")
    parser.add_argument("markers")
    args = parser.parse_args()
    async with RedisStreamsTransport(args.url, namespace=args.namespace, lease_timeout=args.lease) as transport:
        # not durable: the test reads the duplicate reply in the run's stream, which a durable
        # run trims as soon as it has journaled what came before it
        result = await run(hosts_apart(args.markers), run_id=args.run_id, transport=transport, durable=False)
    print(json.dumps({"run_id": result.run_id, "status": result.status, "results": result.results}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
