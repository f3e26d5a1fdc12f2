"""``engine diff A B [--out PATH] [--json] [--bootstrap N] [--alpha X] [--seed N]``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.errors import UserError

DEFAULT_OUT = "diff.parquet"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message, hint=" ".join(self.format_usage().split()))


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="engine diff", description=(
        "Compare two run directories (or two job directories of a sweep): config, plan, results, "
        "and rows present on one side only. Writes diff.parquet."))
    p.add_argument("a", metavar="A", type=Path, help="run directory A")
    p.add_argument("b", metavar="B", type=Path, help="run directory B (differences are B − A)")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT),
                   help=f"where to write the table (default: ./{DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print the diff as JSON instead of tables")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def _clean(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else x


def to_json(d: Any, out: Path) -> str:
    from engine.diff.core import DiffResult

    assert isinstance(d, DiffResult)
    body = {
        "a": d.a, "b": d.b, "settings": asdict(d.settings), "out": str(out),
        "config": [asdict(c) for c in d.config],
        "plan": {"source": d.plan.source, "notes": d.plan.notes, "totals": d.plan.totals(),
                 "rows": [asdict(r) for r in d.plan.rows]},
        "results": [{k: _clean(v) for k, v in r.items()} for r in d.results.iter_rows(named=True)],
        "one_sided": [{k: _clean(v) for k, v in r.items()} for r in d.one_sided.iter_rows(named=True)],
        "samples_shared": d.samples_shared, "significant": d.n_significant,
    }
    return json.dumps(body, indent=2, default=str)


def main(argv: Sequence[str]) -> int:
    from engine.diff.core import diff_runs
    from engine.diff.frame import write_parquet
    from engine.diff.render import render
    from engine.diff.results import Settings

    args = parser().parse_args(list(argv))
    if args.bootstrap < 100:
        raise UserError(f"--bootstrap must be at least 100, not {args.bootstrap}")
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, not {args.alpha}")
    d = diff_runs(args.a, args.b, Settings(bootstrap=args.bootstrap, alpha=args.alpha, seed=args.seed))
    out = args.out
    if out.is_dir():
        out = out / DEFAULT_OUT
    try:
        write_parquet(d, out)
    except OSError as exc:
        raise UserError(f"cannot write the diff table: {exc.strerror or exc}", file=str(out)) from None
    if args.json:
        print(to_json(d, out))
    else:
        print(render(d))
        print(f"\nwrote {out}")
    sys.stdout.flush()
    return 0
