"""Request traces: Mooncake JSONL (with prefix block hashes) and Azure LLM CSV.

- Mooncake (kvcache-ai/Mooncake, FAST'25): one JSON object per line with
  `timestamp` (ms), `input_length`, `output_length`, `hash_ids` (chained
  hashes of the prompt's 512-token blocks).
- Azure LLM inference traces (Azure/AzurePublicDataset): CSV with
  `TIMESTAMP` (a date-time string such as `2023-11-16 18:15:46.6805900`),
  `ContextTokens`, `GeneratedTokens`; no prefix hashes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from scheduler.domain.errors import InvalidArgument

MOONCAKE_BLOCK_TOKENS = 512


@dataclass(frozen=True)
class TraceRequest:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...] = ()
    session: str | None = None


@dataclass(frozen=True)
class Trace:
    name: str
    requests: list[TraceRequest]
    block_tokens: int

    @property
    def span_s(self) -> float:
        if len(self.requests) < 2:
            return 1.0
        return max(1e-3, self.requests[-1].arrival_s - self.requests[0].arrival_s)

    def scaled(self, factor: float) -> Trace:
        """The same requests with arrival times multiplied by `factor` (from the first)."""
        start = self.requests[0].arrival_s if self.requests else 0.0
        return Trace(
            self.name,
            [
                TraceRequest(
                    start + (r.arrival_s - start) * factor,
                    r.prompt_tokens,
                    r.output_tokens,
                    r.blocks,
                    r.session,
                )
                for r in self.requests
            ],
            self.block_tokens,
        )

    def without_prefixes(self) -> Trace:
        """Every block made unique: the same sizes and arrivals with nothing shared."""
        fresh = 0
        out: list[TraceRequest] = []
        for r in self.requests:
            n = len(r.blocks)
            out.append(
                TraceRequest(
                    r.arrival_s,
                    r.prompt_tokens,
                    r.output_tokens,
                    tuple(range(fresh, fresh + n)),
                    r.session,
                )
            )
            fresh += n
        return Trace(f"{self.name} (no shared prefixes)", out, self.block_tokens)


def load_trace(path: Path, limit: int | None = None) -> Trace:
    """A Mooncake JSONL or Azure CSV trace, sorted by arrival; InvalidArgument if neither."""
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
    except OSError as exc:
        raise InvalidArgument(f"trace {path}: {exc.strerror}") from None
    first = head.lstrip()[:1]
    rows = _mooncake(path) if first == "{" else _azure(path)
    requests: list[TraceRequest] = []
    for row in rows:
        requests.append(row)
        if limit is not None and len(requests) >= limit:
            break
    if not requests:
        raise InvalidArgument(f"trace {path}: no requests")
    requests.sort(key=lambda r: r.arrival_s)
    block = MOONCAKE_BLOCK_TOKENS if first == "{" else 16
    # Times from 0: epoch seconds (Azure) leave too little float precision for events.
    start = requests[0].arrival_s
    if start:
        requests = [replace(r, arrival_s=r.arrival_s - start) for r in requests]
    return Trace(path.name, requests, block)


def _mooncake(path: Path) -> Iterator[TraceRequest]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield TraceRequest(
                    float(row["timestamp"]) / 1000.0,
                    int(row["input_length"]),
                    max(1, int(row["output_length"])),
                    tuple(int(h) for h in row.get("hash_ids", ())),
                    str(row["session_id"]) if row.get("session_id") is not None else None,
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidArgument(
                    f"trace {path.name} line {number}: not a Mooncake row ({exc!s:.80})"
                ) from None


def _parse_time(text: str) -> float:
    # Azure writes 7 fractional digits; datetime takes at most 6.
    text = text.strip()
    if "." in text:
        whole, frac = text.split(".", 1)
        text = f"{whole}.{frac[:6]}"
    return datetime.fromisoformat(text).timestamp()


def _azure(path: Path) -> Iterator[TraceRequest]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        needed = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise InvalidArgument(
                f"trace {path.name}: neither Mooncake JSONL nor an Azure CSV with "
                "TIMESTAMP, ContextTokens, GeneratedTokens columns"
            )
        for number, row in enumerate(reader, 2):
            try:
                yield TraceRequest(
                    _parse_time(row["TIMESTAMP"]),
                    max(1, int(row["ContextTokens"])),
                    max(1, int(row["GeneratedTokens"])),
                )
            except ValueError as exc:
                raise InvalidArgument(
                    f"trace {path.name} line {number}: bad Azure row ({exc!s:.80})"
                ) from None
