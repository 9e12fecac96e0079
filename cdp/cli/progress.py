"""What `cdp run` prints while the graph runs: one line per finished step with its outcome (rows
written, checks), a note while a long step runs, and a summary at the end, instead of Dagster's
debug stream (a Python logging handler on Dagster's events)."""

from __future__ import annotations

import logging
import sys
import threading
import time


# an info message a step logs with this prefix is shown in `cdp run`'s output, not only the log
RUN_NOTE = "cdp: "


class RunProgress(logging.Handler):
    """One line per finished step with its outcome (rows written, checks), a note while a long
    step runs, and a summary at the end, instead of Dagster's debug stream."""

    TICK_SECONDS = 30   # a step still running after this long says so, and again every as long

    def __init__(self, out=None, log_path=None):
        super().__init__(logging.DEBUG)
        self.started: dict[str, float] = {}
        self.out = out or sys.stdout
        self.log_path = log_path
        self.failures: list[tuple[str, str, str]] = []   # step, root cause, hint
        self.rows: dict[str, list[tuple[str, int | None, bool]]] = {}   # step -> (asset, rows, not sent)
        self.checks = {"passed": 0, "warnings": [], "failed": []}
        self.quarantined: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def _tick(self) -> None:
        while True:
            time.sleep(5)
            now = time.perf_counter()
            for step, t0 in list(self.started.items()):
                running = now - t0
                if running >= self.TICK_SECONDS and int(running) % self.TICK_SECONDS < 5:
                    self.say(f"  … {step} still running ({running:.0f}s)")

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            text = meta.get("orig_message") or record.getMessage()
            if record.levelno >= logging.WARNING and not text.startswith("Dependencies for step"):
                self.say(f"  ! {text[:400]}")
            elif text.startswith(RUN_NOTE):  # what a step wants the person running it to know
                self.say(f"    {text[len(RUN_NOTE):][:400]}")
            return
        step = event.step_key or ""
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.perf_counter()
        elif kind == "STEP_SUCCESS":
            took = time.perf_counter() - self.started.pop(step, time.perf_counter())
            if step in self.rows or took >= 1:  # a step that only ran checks: in the summary
                self.say(f"  ✓ {step} ({took:.1f}s){self._written(step)}")
        elif kind == "STEP_FAILURE":
            from cdp.errors import explain

            self.started.pop(step, None)
            cause, hint = explain(event.event_specific_data.error, self.log_path)
            self.failures.append((step, cause, hint))
            self.say(f"  ✗ {step} failed: {cause[:2000]}")
            self.say(f"    -> {hint}")
        elif kind == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            rows = mat.metadata.get("dagster/row_count")
            sent = mat.metadata.get("sent")
            unsent = sent is not None and not sent.value   # a send whose data had been delivered already
            self.rows.setdefault(step, []).append((mat.asset_key.to_user_string(), rows.value if rows else None,
                                                   unsent))
            quarantined = mat.metadata.get("rows_quarantined")
            if quarantined is not None and quarantined.value:
                self.quarantined[mat.asset_key.path[-1]] = quarantined.value
        elif kind == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            name = f"{ev.asset_key.to_user_string()}:{ev.check_name}"
            if ev.passed:
                self.checks["passed"] += 1
            elif ev.severity is not None and ev.severity.value == "WARN":
                self.checks["warnings"].append(name)
                self.say(f"  ! check {name}: warning")
            else:
                self.checks["failed"].append(name)
                self.say(f"  ✗ check {name} FAILED")

    def _written(self, step: str) -> str:
        written = self.rows.pop(step, [])
        if not written:
            return ""
        if len(written) == 1:
            asset, rows, unsent = written[0]
            return (f": {asset}" + (f", {rows:,} rows" if rows is not None else "")
                    + (", unchanged since its last send: nothing sent" if unsent else ""))
        total = sum(r for _, r, _ in written if r is not None)
        return f": {len(written)} tables, {total:,} rows"

    def summary(self) -> list[str]:
        c = self.checks
        warned = len(c["warnings"])
        lines = [f"checks: {c['passed']} passed, {warned} warning{'s' * (warned != 1)}, {len(c['failed'])} failed"
                 + (f" ({', '.join(c['failed'])})" if c["failed"] else "")
                 + (f"; warnings: {', '.join(c['warnings'])}" if c["warnings"] else "")]
        if self.quarantined:
            lines.append("quarantined rows (domain.quarantine): "
                         + ", ".join(f"{s} {n:,}" for s, n in sorted(self.quarantined.items())))
        return lines
