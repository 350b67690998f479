"""The wrapper every stage script runs in: project errors become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bertforge.errors import BertforgeError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`; a `BertforgeError` prints ``error: <message>`` and exits 2."""
    try:
        main()
    except BertforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
