"""`llm-gateway config import litellm FILE`: a LiteLLM proxy config written out as an equivalent gateway config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from llm_gateway.config import litellm


def add_import_parser(config_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = config_sub.add_parser("import", help="convert another gateway's config file to this gateway's")
    imp.add_argument("source", choices=["litellm"], help="the gateway the file is for")
    imp.add_argument("file")
    imp.add_argument("-o", "--output", help="write the result here (default: standard output)")


def run_import(args: argparse.Namespace) -> int:
    try:
        raw = yaml.safe_load(Path(args.file).read_text())
    except (OSError, yaml.YAMLError) as exc:
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return 1
    if not isinstance(raw, dict) or not litellm.is_litellm(raw):
        print(f"{args.file}: not a LiteLLM proxy config (none of {', '.join(litellm.LITELLM_KEYS)})",
              file=sys.stderr)
        return 1
    result = litellm.convert(raw)
    text = "# converted from a LiteLLM proxy config by `llm-gateway config import litellm`\n" + yaml.safe_dump(
        result.config, sort_keys=False, allow_unicode=True)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    if result.skipped:
        print(f"{args.file}: {len(result.skipped)} setting(s) not carried over:", file=sys.stderr)
        for line in result.skipped:
            print(f"  {line}", file=sys.stderr)
    return 0
