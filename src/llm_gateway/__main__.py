"""Entry point for `python -m llm_gateway`."""

import sys

from llm_gateway.cli import main

sys.exit(main())
