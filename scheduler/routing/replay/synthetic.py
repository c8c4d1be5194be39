"""A synthetic trace with no shared prefixes, shaped like Azure's LLM traces.

Poisson arrivals; prompt and output lengths log-normal around a chat-like
~1,100 prompt and ~200 output tokens (more decode per prompt token than
Mooncake's conversations, so decode cost matters); no prefix hashes. Written
as Azure CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`) so it replays through
the same reader as the real files.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path


def write_azure_csv(
    path: Path, requests: int = 20_000, rate_per_s: float = 5.0, seed: int = 7
) -> Path:
    rng = random.Random(seed)
    at = datetime(2023, 11, 16, 18, 0, 0)
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for _ in range(requests):
        at += timedelta(seconds=rng.expovariate(rate_per_s))
        prompt = max(10, int(rng.lognormvariate(7.0, 1.0)))
        output = max(1, int(rng.lognormvariate(5.3, 0.9)))
        # Azure writes seven fractional digits.
        lines.append(f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond:06d}0,{prompt},{output}")
    path.write_text("\n".join(lines) + "\n")
    return path
