"""How a failed step is told to the person running cdp: the root cause, where, and what to do.

Dagster wraps an asset's exception in its own ("Error occurred while executing op ..."); what a
user needs is the innermost exception. For the errors cdp raises about the tenant's own files and
config (a source file that cannot be read, a tagged column missing from it, a bad labels file, a
segment on a column that does not exist...) that is a sentence naming the file and the field, and
no traceback; for anything else, the exception, the line of code it came from, and where the full
traceback was written. cdp's own errors are Dagster Failures (UserError), so the Dagster UI and
run log show the same sentence as the step's error, with what to do in its metadata.
"""

from __future__ import annotations

import re

import dagster as dg

# the exceptions cdp raises about the user's own files and config -> what to do about them
USER_ERRORS = {
    "SourceFileError": "fix the file, or the source's path / columns / encoding in the tenant config "
                       "(`cdp check-config` checks them without running)",
    "FileFormatError": "fix the file, or set the source's encoding: / delimiter:",
    "ConfigError": "fix the field named above in the tenant config",
    "LabelFileError": "fix the labels file (stitch.labels) at the line named above",
    "SegmentError": "fix the segment in the tenant config (`cdp segment preview NAME` shows its SQL)",
    "QueryError": "fix the saved query named above",
    "OrchestrationError": "fix the orchestration or its destination in the tenant config",
    "UnsupportedOnSpark": "run this tenant with engine: duckdb, or leave the feature out",
    "WebhookError": "check the webhook's URL and that the receiving service is up",
}
# known messages of other libraries -> what they mean here
MESSAGE_HINTS = (
    (re.compile(r"Could not set lock on file|Conflicting lock is held", re.I),
     "another process (dagster dev, cdp serve, a notebook) has the warehouse open for writing: stop it, "
     "or run with another --warehouse"),
    (re.compile(r"No space left on device", re.I), "the disk is full: free space where the warehouse lives"),
    (re.compile(r"Out of Memory|MemoryError", re.I),
     "the step ran out of memory: DuckDB spills to disk, so give it a temp_directory with room, or more memory"),
)


class UserError(dg.Failure):
    """An error about the tenant's own files, config or partners, raised in a step: a Dagster
    Failure, so the Dagster UI and run log show its message as the step's error (not Dagster's
    "Error occurred while executing op" wrapper) and what to do as the failure's metadata.
    str() is the message alone, as for any exception."""

    def __init__(self, message: str = ""):
        hint = USER_ERRORS.get(type(self).__name__, "")
        super().__init__(description=message, metadata={"what to do": hint} if hint else None)


FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def innermost(error):
    """The deepest cause of a Dagster SerializableErrorInfo (or of an exception)."""
    *_, last = _chain(error)
    return last


def _chain(error):
    """The error and its causes, outermost first (a Dagster SerializableErrorInfo or an exception)."""
    for _ in range(50):
        yield error
        nested = getattr(error, "cause", None) or getattr(error, "context", None)
        if nested is None and isinstance(error, BaseException):
            nested = error.__cause__ or error.__context__
        if nested is None:
            return
        error = nested


def _cls(error) -> str:
    return getattr(error, "cls_name", None) or type(error).__name__


def explain(error, log_path=None) -> tuple[str, str]:
    """(the root cause in a sentence, a hint) for a failed step's error: cdp's own sentence about
    the user's file or config where there is one in the chain (it names the file and field, and
    is clearer than the library error under it), else the innermost exception."""
    root = next((e for e in _chain(error) if _cls(e) in USER_ERRORS), None) or innermost(error)
    cls = _cls(root)
    message = (getattr(root, "message", None) or str(root)).strip()
    message = re.sub(rf"^[\w.]*\b{re.escape(cls)}: ", "", message).strip()
    first = message.splitlines()[0] if message else cls
    if cls in USER_ERRORS:
        return first, USER_ERRORS[cls]
    if cls == "Failure":  # a step that stopped on purpose, saying why
        return first, "the step stopped on purpose: its message says what the data lacks"
    for pattern, hint in MESSAGE_HINTS:
        if pattern.search(message):
            return f"{cls}: {first}", hint
    where = _where(root)
    more = f"; the full traceback is in {log_path}" if log_path else ""
    return f"{cls}: {first}{f' (at {where})' if where else ''}", "an unexpected error in cdp or a library" + more


def _where(root) -> str | None:
    """file:line of the innermost frame that is cdp's own code (else the innermost frame)."""
    stack = getattr(root, "stack", None)
    if stack is None and isinstance(root, BaseException):
        import traceback

        stack = traceback.format_tb(root.__traceback__)
    frames = [m for entry in stack or [] for m in FRAME.finditer(entry)]
    if not frames:
        return None
    ours = [m for m in frames if "/cdp/" in m.group(1)]
    m = (ours or frames)[-1]
    path = m.group(1)
    short = path[path.rindex("/cdp/") + 1:] if "/cdp/" in path else path
    return f"{short}:{m.group(2)} in {m.group(3)}"
