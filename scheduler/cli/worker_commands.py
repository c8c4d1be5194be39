"""`gpupool logs`: a worker's log, relayed from the agent of its node."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import click

from scheduler.cli.admin_commands import EXIT_INTERRUPTED, CliContext, pass_state

# The agent serves a byte offset from the end; lines are found here by asking
# for more bytes until N whole lines came back (or the whole log did).
FIRST_GUESS_BYTES_PER_LINE = 256
MAX_TAIL_BYTES = 64 * 1024 * 1024


def last_lines(data: bytes, lines: int, whole: bool) -> bytes | None:
    """The last `lines` whole lines of `data`; None if it may hold fewer than
    that many whole lines (a longer tail is needed). `whole`: data is the log."""
    parts = data.splitlines(keepends=True)
    if whole or len(parts) > lines:
        return b"".join(parts[-lines:]) if lines else b""
    return None


def tail_bytes_for(fetch: Callable[[int], bytes], lines: int) -> tuple[int, bytes]:
    """How many bytes from the end hold the last `lines` lines, and those lines."""
    want = max(1, lines) * FIRST_GUESS_BYTES_PER_LINE
    while True:
        data = fetch(want)
        whole = len(data) < want or want >= MAX_TAIL_BYTES
        kept = last_lines(data, lines, whole)
        if kept is not None:
            return len(kept), kept
        want *= 4


@click.command()
@click.argument("allocation_id", metavar="ALLOC")
@click.option("--rank", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output until Ctrl-C.")
@click.option(
    "--tail",
    "tail_lines",
    type=click.IntRange(min=0),
    default=None,
    metavar="LINES",
    help="Only the last LINES lines [default: the whole log].",
)
@pass_state
def logs(
    state: CliContext, allocation_id: str, rank: int, follow: bool, tail_lines: int | None
) -> None:
    """Print the log of one rank's worker (stdout and stderr, all restarts)."""
    out = sys.stdout.buffer
    client = state.client()

    def fetch(tail: int) -> bytes:
        return b"".join(client.worker_logs(allocation_id, rank, tail, False))

    try:
        chunks: Iterable[bytes]
        if tail_lines is None:
            chunks = client.worker_logs(allocation_id, rank, 0, follow)
        else:
            size, kept = tail_bytes_for(fetch, tail_lines)
            if not follow:
                chunks = [kept]
            else:
                # The log may have grown since: start where those lines started.
                chunks = client.worker_logs(allocation_id, rank, max(size, 1), True)
                if size == 0:
                    chunks = _skip_first_line(chunks)
        for data in chunks:
            out.write(data)
            out.flush()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _skip_first_line(chunks: Iterable[bytes]) -> Iterable[bytes]:
    """Drop everything up to the first newline (a tail of 0 lines)."""
    skipping = True
    for data in chunks:
        if skipping:
            _, sep, data = data.partition(b"\n")
            if not sep:
                continue
            skipping = False
        if data:
            yield data
