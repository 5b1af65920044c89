"""The export file: a ZIP holding one UTF-8 CSV with a BOM, streamed (constant memory, ZIP64 for any size).

Rows arrive either as CSV text straight from PostgreSQL's COPY (no encrypted columns) or as records
whose AES columns are encrypted here. The methods block (compression, encryption): the EXPORT job calls
them in a thread while the database prepares the next batch.
"""
from __future__ import annotations

import base64
import csv
import io
import os
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models.exports import guard

NONCE_BYTES = 12
# Level 1 deflates ~3x faster than the default 6 for a ~15% larger file: exports are CPU-bound.
COMPRESS_LEVEL = 1


def encrypt_cell(aes: AESGCM, text: str) -> str:
    """base64(nonce || ciphertext || tag): AES-256-GCM with a fresh random 12-byte nonce per cell.

    The first base64 character comes from the nonce's top 6 bits; 62 is '+', which a spreadsheet reads
    as a formula, so such a nonce is drawn again (1 in 64; still random, 2^94 nonces left to draw from).
    """
    nonce = os.urandom(NONCE_BYTES)
    while nonce[0] >> 2 == 62:
        nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + aes.encrypt(nonce, text.encode(), None)).decode()


def decrypt_cell(key: bytes, cell: str) -> str:
    """The inverse of encrypt_cell (what a recipient holding the workspace's export key runs)."""
    raw = base64.b64decode(cell)
    return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()


class CsvZipWriter:
    """`with CsvZipWriter(path, "users.csv") as w: w.header(...); w.copy_text(...); w.records(...)`."""

    def __init__(self, path: Path, csv_name: str, *, aes_key: bytes | None = None,
                 aes_columns: Sequence[int] = ()) -> None:
        self.path, self.csv_name = path, csv_name
        self._aes = AESGCM(aes_key) if aes_key is not None else None
        self._aes_columns = list(aes_columns)
        if self._aes_columns and self._aes is None:
            raise ValueError("AES columns need a key")
        self._zip: zipfile.ZipFile | None = None
        self._stream: Any = None

    def __enter__(self) -> CsvZipWriter:
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
        try:
            entry = zipfile.ZipInfo(self.csv_name, date_time=time.localtime()[:6])  # not zipfile's 1980 default
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry._compresslevel = COMPRESS_LEVEL  # type: ignore[attr-defined]  # what ZipFile.open(name) sets
            self._stream = self._zip.open(entry, "w", force_zip64=True)
            self._stream.write("\ufeff".encode())  # the BOM: spreadsheets then read the file as UTF-8
        except BaseException:
            self._close()  # __exit__ does not run when __enter__ raises: the file must not stay open
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def _close(self) -> None:
        """Close the CSV entry, then the ZIP, even when closing the entry fails (the file handle is freed)."""
        stream, archive, self._stream, self._zip = self._stream, self._zip, None, None
        try:
            if stream is not None:
                stream.close()
        finally:
            if archive is not None:
                archive.close()

    def header(self, labels: Sequence[str]) -> None:
        # Tag names are user text too: headers get the same formula guard as cells.
        self._stream.write(self._lines([[guard(label) for label in labels]]))

    def copy_text(self, data: bytes) -> None:
        """CSV lines as COPY ... (FORMAT csv) wrote them (UTF-8, `\\n` line ends, cells already guarded)."""
        self._stream.write(data)

    def records(self, rows: Sequence[Sequence[str | None]]) -> None:
        """Rows of text cells (None: empty) from the same SQL: AES columns are encrypted, the rest are final."""
        aes, indexes = self._aes, self._aes_columns
        if aes is None or not indexes:
            self._stream.write(self._lines(rows))
            return
        out = []
        for row in rows:
            cells = list(row)
            for i in indexes:
                if cells[i] is not None:  # an empty cell stays empty: there is nothing to hide
                    cells[i] = encrypt_cell(aes, cells[i])
            out.append(cells)
        self._stream.write(self._lines(out))

    @staticmethod
    def _lines(rows: Sequence[Sequence[str | None]]) -> bytes:
        # The dialect of PostgreSQL's CSV COPY (minimal quoting, "\n"), so both paths write the same file.
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue().encode()
