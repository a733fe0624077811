"""Check RecBole's atomic files (``.inter``, ``.item``, ``.user``) before RecBole loads them.

RecBole reads them with pandas, which turns a truncated last line into a row of NaN (a user's
test item, silently) and bad bytes or a non-number in a float field into a traceback naming
neither file nor line. This check reads each file once, as pandas' python engine does (the
same separator, encoding and ``"`` quoting), and raises :class:`DataError` naming the file, the
line and the field. It costs one pass of the csv module over the text (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator, List, Optional, Set, Tuple

from recbole_eimf.errors import DataError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


def atomic_files(config) -> Iterator[Tuple[Path, str]]:
    """``(path, source)`` of each atomic file RecBole would load for ``config``'s dataset."""
    folder, name = Path(config["data_path"]), config["dataset"]
    inter_names = config["benchmark_filename"] or [None]
    for part in inter_names:
        yield folder / (f"{name}.{part}.inter" if part else f"{name}.inter"), "inter"
    for source in ("user", "item"):
        path = folder / f"{name}.{source}"
        if path.is_file():
            yield path, source


def loaded_columns(config, source: str) -> Optional[Set[str]]:
    """The fields RecBole loads from ``source`` (``load_col``/``unload_col``): None for all."""
    load_col, unload_col = config["load_col"], config["unload_col"] or {}
    if load_col is None or load_col.get(source) == "*":
        columns = None
    else:
        columns = set(load_col.get(source, ()))
    if columns is not None and source in unload_col:
        columns -= set(unload_col[source])
    return columns


def check_atomic_files(config) -> None:
    """Raise :class:`DataError` for the first malformed atomic file of ``config``'s dataset."""
    for path, source in atomic_files(config):
        columns = loaded_columns(config, source)
        if path.is_file() and columns != set():
            check_atomic_file(path, config["field_separator"], config["seq_separator"],
                              config["encoding"] or "utf-8", columns)


def _text(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}, line {line}: bytes that are not {encoding} ({err.reason} at byte {err.start}). "
            f"Convert the file to {encoding}, or set `encoding` to the file's encoding (e.g. latin-1)"
        ) from None


def _header(path: Path, row: List[str], separator: str) -> List[Tuple[str, str]]:
    fields = []
    for entry in row:
        name, _, ftype = entry.partition(":")
        if ftype not in FIELD_TYPES:
            raise DataError(
                f"{path}, line 1 (header): field {entry!r} is not name:type with a type among "
                f"{', '.join(FIELD_TYPES)} (are its fields separated by `field_separator` [{separator!r}]?)"
            )
        fields.append((name, ftype))
    return fields


def check_atomic_file(
    path: Path, separator: str, seq_separator: str, encoding: str, columns: Optional[Set[str]] = None
) -> int:
    """Check one atomic file; return its number of data rows. ``columns``: the fields RecBole
    loads (None: all), whose float values must parse as numbers."""
    text = _text(path, encoding)
    reader = csv.reader(io.StringIO(text), delimiter=separator, quotechar='"')
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}: the file is empty; an atomic file starts with a header line such as "
                        f"user_id:token{separator}item_id:token{separator}timestamp:float")
    fields = _header(path, header, separator)
    floats = [(i, name, ftype) for i, (name, ftype) in enumerate(fields)
              if ftype.startswith("float") and (columns is None or name in columns)]
    rows = 0
    for row in reader:
        if not row:
            continue  # a blank line, which pandas skips too
        rows += 1
        if len(row) != len(fields):
            _wrong_width(path, reader.line_num, row, fields)
        for i, name, ftype in floats:
            try:
                float(row[i])  # the common case, without a call per value
            except ValueError:  # an empty value, a sequence or a non-number: look closer
                _check_number(path, reader.line_num, name, row[i], seq_separator if ftype == "float_seq" else None)
    if rows == 0:
        raise DataError(f"{path}: only a header line, no data rows")
    return rows


def _wrong_width(path: Path, line: int, row: List[str], fields: List[Tuple[str, str]]) -> None:
    if len(row) < len(fields):
        why = f"cut short: field {fields[len(row)][0]!r} and after are missing"
    else:
        why = "too many: a separator inside a value that is not quoted?"
    raise DataError(f"{path}, line {line}: {len(row)} fields where the header has {len(fields)} ({why})")


def _check_number(path: Path, line: int, field: str, value: str, seq_separator: Optional[str]) -> None:
    for part in value.split(seq_separator) if seq_separator else (value,):
        if not part.strip():
            continue  # a missing value: RecBole fills it
        try:
            float(part)
        except ValueError:
            raise DataError(
                f"{path}, line {line}, field {field!r}: {part!r} is not a number (the header declares it float)"
            ) from None
