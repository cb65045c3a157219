"""The shapes suite: easy-vqa's images posed as VQAv2, GQA, NLVR2 and COCO captions, in their official formats.

    python data_scripts/make_shapes_suite.py --out data/shapes [--examples 60] [--seed 0]

Needs no network (easy-vqa ships in its PyPI package). Writes data/shapes/{vqa,gqa,nlvr2,caption}, each in the
layout its task reads, with --examples examples per task and split. Then:

    dept-vl train --config shapes_multitask            # reads data/shapes/... from the working directory
    dept-vl eval --checkpoint runs/shapes-dept         # every task the run was trained on
"""

from __future__ import annotations

import argparse
import json

from dept_vl.data.shapes_suite import write_shapes_suite


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where the four task directories go")
    parser.add_argument("--examples", type=int, default=60, help="examples per task and split (default: 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dirs = write_shapes_suite(args.out, args.examples, args.seed)
    print(json.dumps({task: str(path) for task, path in dirs.items()}, indent=2))


if __name__ == "__main__":
    main()
