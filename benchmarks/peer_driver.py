"""The peers' side of benchmarks/peers.py: runs inside a peer's own virtual environment (no
edge_albert there), converts the student with that peer's tools and writes the files and a
``driver.json`` of what it did; a recipe that fails is recorded with its error.

    <peer venv>/bin/python benchmarks/peer_driver.py --driver optimum --model M --out O ...

One module per peer (peer_optimum.py, peer_litert.py) on top of peer_common.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from peer_common import VENVS, first_lines, versions


def driver_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True, choices=list(VENVS))
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calibration", required=True, help=".npz of padded calibration rows")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    if args.driver == "optimum":
        from peer_optimum import drive
    else:
        from peer_litert import drive
    try:
        rows = drive(args.model, args.out, args.calibration)
        fatal = None
    except Exception as exc:
        rows, fatal = [], {"error": first_lines(exc), "traceback": traceback.format_exc()[-3000:]}
    result = {"rows": rows, "fatal": fatal, "python": sys.version.split()[0],
              "versions": versions(VENVS[args.driver]["record"])}
    (args.out / "driver.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0




if __name__ == "__main__":
    sys.exit(driver_main(sys.argv[1:]))
