"""Where a secret comes from: an environment variable, or a file another variable names.

    python -c "from seqtune.secret_source import read_secret; print(read_secret({'X': 's3'}, 'X', 'X_FILE', what='token', error=ValueError))"

The service's API token (`seqtune.serving.security`) and the tracking server's admin password
(`seqtune.tracking_server`) are given the same two ways, so that a secret never has to sit on
a command line: `NAME=value`, or `NAME_FILE=/run/secrets/...` (a container's secret mount).
Each caller judges the value itself (what a header can carry, what MLflow accepts).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def read_secret(environ: Mapping[str, str], var: str, file_var: str, *, what: str,
                error: type[Exception]) -> tuple[str, str] | None:
    """(the secret with surrounding whitespace stripped, where it came from), or None when
    neither variable is set. Both set, an empty file variable, or an unreadable file raise
    `error` with a message that says the fix and never holds the secret. Stripped because a
    file written by `echo` ends in a newline."""
    value, path = environ.get(var), environ.get(file_var)
    if value is not None and path is not None:
        raise error(f"both {var} and {file_var} are set: set one")
    if path is not None:
        if not path.strip():
            raise error(f"{file_var} is set but empty: name the {what} file")
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise error(f"{file_var}={path}: cannot read the {what} file: {e}") from None
        return value.strip(), f"{file_var} ({path})"
    if value is not None:
        return value.strip(), var
    return None
