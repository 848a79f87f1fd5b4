"""The ``tokenfilter`` command: small utilities around the workflow.

    tokenfilter validate CONFIG      check a config file (errors name key, value and what is allowed)
    tokenfilter config-docs          print config/README.md, generated from the schema
    tokenfilter train SPEC.json      run one training spec (what the workflow and torchrun call)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenfilter", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="validate a workflow config file")
    validate.add_argument("config")
    sub.add_parser("config-docs", help="print the configuration reference (config/README.md)")
    train = sub.add_parser("train", help="run one training spec (JSON)")
    train.add_argument("spec")
    args = parser.parse_args(argv)

    if args.command == "validate":
        from tokenfilter.config import load_config
        from tokenfilter.errors import TokenfilterError

        try:
            load_config(args.config)
        except TokenfilterError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 1
        print(f"{args.config}: valid")
        return 0
    if args.command == "config-docs":
        from tokenfilter.config import schema_markdown

        sys.stdout.write(schema_markdown())
        return 0
    if args.command == "train":
        from tokenfilter.train import main as train_main

        train_main([args.spec])
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
