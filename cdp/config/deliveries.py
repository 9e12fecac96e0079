"""`sources.<source>.deliveries:` - a source that arrives as a folder of daily delivery files
(whole snapshots, or deltas of changes and deletions) instead of one file re-read whole."""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cdp.config.common import StrictModel

# the values of a deleted flag that delete the record (case and surrounding blanks ignored)
TRUE_FLAGS = ("1", "true", "yes", "y", "t")
# names a writer gives a file it has not finished writing: never read as a delivery
UNFINISHED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


class Deliveries(StrictModel):
    """How a source's folder of delivery files is applied, one file at a time in file-name order."""
    mode: Literal["snapshot", "delta"] = Field(
        description="snapshot: each delivery is the whole source (a key absent from it is deleted); "
                    "delta: each delivery holds changes only (its rows insert or replace by key)")
    files: str | None = Field(
        default=None, description="glob of the delivery files inside the source's folder (not its "
                                  "subfolders), applied in file-name order; default: *.csv, or "
                                  "*.parquet with format: parquet")
    deleted_flag: str | None = Field(
        default=None, description="delta: a column of the delivery files whose true value (1, true, "
                                  "yes, y, t) deletes the record of that row's key instead of "
                                  "replacing it; not loaded into the domain table")
    deletes: str | None = Field(
        default=None, description="delta: glob of files in the folder that list keys to delete (one "
                                  "column per key column, named as in the data files: the column "
                                  "tagged pk for customers, order-id for transactions...), applied "
                                  "in file-name order among the other deliveries")
    settle_seconds: int = Field(
        default=10, ge=0, description="a file modified less than this many seconds ago may still be "
                                      "being written: runs and the delivery sensor leave it for later")

    @field_validator("files", "deletes")
    @classmethod
    def _a_file_glob(cls, v: str | None) -> str | None:
        if v is not None and ("/" in v or "\\" in v or not v.strip()):
            raise ValueError(f"{v!r} is not a file name glob inside the folder (no '/', e.g. '*.csv')")
        return v

    @model_validator(mode="after")
    def _delta_only(self) -> "Deliveries":
        for name in ("deleted_flag", "deletes"):
            if getattr(self, name) is not None and self.mode != "delta":
                raise ValueError(f"{name}: only a delta delivery lists deletions (a snapshot deletes "
                                 "every key it no longer holds)")
        if self.deletes is not None and self.files is not None and self.deletes == self.files:
            raise ValueError("deletes: the glob of the deletes files is the glob of the data files")
        return self

    def data_glob(self, fmt: str) -> str:
        return self.files or f"*.{fmt}"

    def is_deletes_file(self, file_name: str) -> bool:
        """A file of keys to delete (deletes:), not of records."""
        return self.deletes is not None and fnmatch.fnmatchcase(file_name, self.deletes)
