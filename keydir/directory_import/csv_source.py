"""Read directory entries from a CSV file, with a report of every line that is wrong.

Format (docs/directory-import.md): UTF-8 (a byte-order mark is fine), comma or semicolon
separated, a header row naming the columns, in any order:

- ``address`` (required): the e-mail address;
- ``display_name`` (optional): the person's name;
- ``enabled`` (optional): true/false, yes/no, 1/0; empty means true;
- ``external_id`` (optional): the person's id in the customer's own directory.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from keydir import tenancy
from keydir.directory_import.sync import SourceEntry
from keydir.errors import Refused

COLUMNS = ("address", "display_name", "enabled", "external_id")
_TRUE = {"", "true", "yes", "y", "1", "ja", "wahr"}
_FALSE = {"false", "no", "n", "0", "nein", "falsch"}


@dataclass
class CsvProblem:
    line: int  # 1 is the header row
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class CsvReport:
    entries: list[SourceEntry] = field(default_factory=list)
    problems: list[CsvProblem] = field(default_factory=list)


def read_csv(data: bytes) -> CsvReport:
    """Every valid row as an entry; every wrong one (or a wrong header) as a problem."""
    report = CsvReport()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.problems.append(CsvProblem(1, f"the file is not UTF-8 (byte {exc.start}): "
                                             "save it as 'CSV UTF-8'"))
        return report
    if not text.strip():
        report.problems.append(CsvProblem(1, "the file is empty: expected a header row "
                                             "'address,display_name,enabled'"))
        return report
    delimiter = ";" if text.partition("\n")[0].count(";") > text.partition("\n")[0].count(",") \
        else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip().lower() for name in next(reader)]
    unknown = [name for name in header if name not in COLUMNS]
    if "address" not in header or unknown or len(set(header)) != len(header):
        report.problems.append(CsvProblem(1, _header_problem(header, unknown)))
        return report
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines (e.g. at the end) are not entries
        if len(row) != len(header):
            report.problems.append(CsvProblem(
                line, f"{len(row)} field(s), the header has {len(header)} "
                      f"(a {delimiter!r} inside a name needs quotes)"))
            continue
        values = dict(zip(header, (cell.strip() for cell in row), strict=True))
        problem = _row_problem(values, seen, line)
        if problem:
            report.problems.append(CsvProblem(line, problem))
            continue
        address = tenancy.normalise_address(values["address"])
        seen[address] = line
        report.entries.append(SourceEntry(
            address=address, display_name=values.get("display_name", ""),
            external_id=values.get("external_id", ""),
            enabled=values.get("enabled", "").lower() in _TRUE))
    return report


def _header_problem(header: list[str], unknown: list[str]) -> str:
    expected = "expected a header row naming the columns, e.g. 'address,display_name,enabled'"
    if "address" not in header:
        return f"no 'address' column in the header ({', '.join(header)}); {expected}"
    if unknown:
        return (f"unknown column(s) {', '.join(unknown)}; the columns are "
                f"{', '.join(COLUMNS)}")
    return f"a column is named twice in the header ({', '.join(header)})"


def _row_problem(values: dict[str, str], seen: dict[str, int], line: int) -> str:
    try:
        address = tenancy.normalise_address(values["address"])
    except Refused as exc:
        return str(exc)
    if address in seen:
        return f"{address} is listed already on line {seen[address]}"
    enabled = values.get("enabled", "").lower()
    if enabled not in _TRUE | _FALSE:
        return f"enabled is {values['enabled']!r}: use true or false (empty means true)"
    if len(values.get("display_name", "")) > 200:
        return "display_name is longer than 200 characters"
    return ""
