"""`readroom-bench [SCENARIO ...] [--json FILE] [--repeat N]`: run benchmark scenarios, print a table."""
from __future__ import annotations

import argparse
import json
import sys

from bench.harness import Context, format_table, load_scenario, scenario_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="readroom-bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help=f"default: all ({', '.join(scenario_names())})")
    parser.add_argument("--json", metavar="FILE", help="write the results as a JSON list")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median is kept)")
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(scenario_names()))
        return 0
    names = args.scenarios or scenario_names()
    unknown = [n for n in names if n not in scenario_names()]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    ctx = Context(repeat=args.repeat)
    results = []
    try:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.extend(load_scenario(name).run(ctx))
    finally:
        ctx.close()
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.as_json() for r in results], fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
