"""Check which first-party plugins `densebench plugins --json` lists (used by the nox sessions).

    python scripts/check_plugin_listing.py --expect amp --absent compile jit trt
"""

import argparse
import json
import subprocess
import sys

BUILTINS = ("baseline", "channels_last", "fp16")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", nargs="*", default=[])
    parser.add_argument("--absent", nargs="*", default=[])
    args = parser.parse_args()
    proc = subprocess.run(
        [sys.executable, "-c", "from densebench_core.cli import main; main()", "plugins", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    problems = [f"{name} is not listed" for name in (*BUILTINS, *args.expect) if name not in listed]
    problems += [f"{name} is listed but was not installed" for name in args.absent if name in listed]
    for name in listed:
        print(f"{name:<14} {listed[name]['status']:<12} {listed[name]['reason']}")
    for problem in problems:
        print(f"check_plugin_listing: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
