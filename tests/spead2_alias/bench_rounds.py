"""Run ``spead2_bench.py master`` for a fixed number of short rounds.

spead2_bench.py's master searches for a sustainable rate with at least 1 GB
per measurement, far too much for a test. This driver runs the installed
``spead2_bench.py`` script unchanged, except that the master's schedule
(``spead2.tools.bench_asyncio.run_master``) is replaced by ``--rounds``
calls of its own ``measure_connection_once`` with ``--heaps`` heaps each, at
full speed, each requiring every heap. Each round prints::

    round I: received R/N heaps GOOD|BAD

Usage: ``python bench_rounds.py --script PATH [--rounds N] [--heaps N]
[master options…] HOST:PORT`` (the remaining arguments go to
``spead2_bench.py master``).
"""

import argparse
import json
import runpy
import sys
import types

import spead2.tools.bench_asyncio as bench


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", required=True, help="path of spead2_bench.py")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--heaps", type=int, default=20)
    opts, rest = parser.parse_known_args()

    received = []

    def loads(text, *args, **kwargs):
        # measure_connection_once only logs the agent's count of heaps; note
        # it as the module decodes the agent's reply.
        value = json.loads(text, *args, **kwargs)
        if isinstance(value, dict) and "received_heaps" in value:
            received.append(value["received_heaps"])
        return value

    # Only the bench module's view of json changes.
    bench.json = types.SimpleNamespace(dumps=json.dumps, loads=loads)

    async def rounds(args, protocol, sender, receiver):
        for i in range(opts.rounds):
            del received[:]
            good, _rate = await bench.measure_connection_once(
                args, protocol, sender, receiver, 0.0, opts.heaps, opts.heaps
            )
            count = received[-1] if received else -1
            print(
                f"round {i}: received {count}/{opts.heaps} heaps {'GOOD' if good else 'BAD'}",
                flush=True,
            )

    bench.run_master = rounds
    sys.argv = [opts.script, "master"] + rest
    runpy.run_path(opts.script, run_name="__main__")


if __name__ == "__main__":
    main()
