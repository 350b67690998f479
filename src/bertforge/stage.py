"""The wrapper every stage script runs in: project errors become one line and exit code 2.

Errors from the operating system about a named file (permission denied, a read-only or full
disk, a missing file) are the user's environment, not a bug: they become one line naming the file
and errno's meaning, exit code 2. Anything else keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from bertforge.errors import BertforgeError
from bertforge.io import is_disk_full


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`; a `BertforgeError` prints ``error: <message>`` and exits 2."""
    try:
        main()
    except BertforgeError as error:
        fail(str(error))
    except OSError as error:
        message = describe_os_error(error)
        if message is None:
            raise
        fail(message)
    except Exception as error:  # a full disk reported by a library (safetensors, torch)
        if not is_disk_full(error):
            raise
        fail(f"disk full (no space left on device): {str(error).splitlines()[0]}")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


def fail(message: str) -> None:
    """Print the one error line and exit 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def describe_os_error(error: OSError) -> str | None:
    """One line for an OSError about a file or a full disk; None when it names nothing."""
    filename = error.filename
    if is_disk_full(error):
        return f"disk full (no space left on device) while writing {filename or 'the output'}"
    if filename is None:
        return None
    meaning = os.strerror(error.errno) if error.errno else str(error)
    if error.errno == errno.EACCES:
        meaning = "permission denied (not readable or not writable by this user)"
    second = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"{filename}{second}: {meaning.lower()}"
