"""Build the "brain-offline" dataset: labeled brain pseudo-subjects from volumes shipped inside registry packages.

    python benchmarks/fetch_brain_offline.py [--out DIR] [--subjects 20] [--seed 0] [--cache DIR]

Downloads two pinned wheels (deepmriprep, nilearn) with ``pip download --no-deps`` into the cache (skipped when they
are there; copy them in by hand on a machine without PyPI access), reads the CAT12 template, its neuromorphometrics
atlas and the ICBM152 template straight out of them, and writes an MSD folder. All labeled subjects derive from ONE
template through random deformations and acquisition effects; see ``ContrastSegLib/data/brain_offline.py``. An
existing folder built with the same parameters is reused. The default folder lies outside the repository, so the
generated data are never committed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ContrastSegLib.data.brain_offline import DEFAULT_CACHE, DEFAULT_ROOT, PROVENANCE, ensure_brain_offline
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.errors import ContrastSegError



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_ROOT, help=f"dataset folder (default {DEFAULT_ROOT})")
    parser.add_argument("--subjects", type=int, default=20, help="labeled pseudo-subjects (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="pseudo-subject family (default 0)")
    parser.add_argument("--unlabeled", type=int, default=4,
                        help="unlabeled pseudo-subjects of the ICBM152 brain besides its undeformed copy (default 4)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"wheel cache (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        folder = ensure_brain_offline(args.out, args.subjects, args.seed, args.cache, args.unlabeled)
        dataset = discover(folder)
    except ContrastSegError as error:
        print(f"fetch_brain_offline: error: {error}", file=sys.stderr)
        return 1
    provenance = json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))
    print(f"{folder}: {len(dataset.labeled)} labeled, {len(dataset.unlabeled)} unlabeled cases "
          f"({time.perf_counter() - started:.1f} s; built in {provenance.get('build_seconds')} s)")
    print(provenance["statement"])
    for value, item in provenance["structures"].items():
        print(f"  {value} {item['name']}: " + ", ".join(item["atlas_names"]))
    for package in provenance["packages"]:
        print(f"  {package['name']}=={package['version']}: {package['licence']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
