"""diff.parquet: one tidy long table, a ``section`` column (config | plan | results | one_sided)
and typed columns, each section using the ones it needs (the rest are null).

==============  ===========================================================================
column          meaning
==============  ===========================================================================
section         config | plan | results | one_sided
key             config: the dotted key; plan: node kind (state | finetune | group);
                one_sided: state | cell | samples
change          config: changed | added | removed; plan: shared | only_a | only_b;
                one_sided: only_a | only_b
a, b            config: the values in A and B as JSON ('***' for secrets, null if absent)
state           state label (plan, results, one_sided)
probe_set       probe set (plan groups, results, one_sided cells and samples)
family          probe family (results)
dimension       dimension, 'all' for the pooled row (results, one_sided cells)
count           plan: nodes; one_sided: samples (samples) or units (cell)
value_a/value_b results: mean unit score in A / B (0 aligned .. 1 misaligned);
                one_sided cells: the side's own value in value_a or value_b
difference      value_b − value_a
ci_low/ci_high  bootstrap CI of the difference
test            wilcoxon (paired over shared units) | mann_whitney (unpaired)
statistic       W (min of R+, R−) or U (of B)
p_value         two-sided
p_adjusted      Holm over all results rows
effect_size     rank-biserial correlation, positive when B is higher
n_a, n_b        units in A and B; n_pairs: matched units (0 for mann_whitney)
significant     p_adjusted ≤ alpha
==============  ===========================================================================
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine import __version__
from engine.diff.core import DiffResult

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

DIFF = pa.schema([
    pa.field("section", _S, nullable=False), pa.field("key", _S), pa.field("change", _S),
    pa.field("a", _S), pa.field("b", _S), pa.field("state", _S), pa.field("probe_set", _S),
    pa.field("family", _S), pa.field("dimension", _S), pa.field("count", _I),
    pa.field("value_a", _F), pa.field("value_b", _F), pa.field("difference", _F), pa.field("ci_low", _F),
    pa.field("ci_high", _F), pa.field("test", _S), pa.field("statistic", _F), pa.field("p_value", _F),
    pa.field("p_adjusted", _F), pa.field("effect_size", _F), pa.field("n_a", _I), pa.field("n_b", _I),
    pa.field("n_pairs", _I), pa.field("significant", _B),
])


def to_frame(d: DiffResult) -> pl.DataFrame:
    """The diff as one frame with exactly the DIFF columns."""
    empty = pl.from_arrow(DIFF.empty_table())
    assert isinstance(empty, pl.DataFrame)
    schema = empty.schema
    def typed(*names: str) -> dict[str, pl.DataType]:
        return {k: schema[k] for k in names}

    parts = [
        pl.DataFrame([{"section": "config", "key": c.key, "change": c.change, "a": c.a, "b": c.b}
                      for c in d.config], schema=typed("section", "key", "change", "a", "b")),
        pl.DataFrame([{"section": "plan", "key": r.node, "change": r.side, "state": r.state,
                       "probe_set": r.probe_set, "count": r.count} for r in d.plan.rows],
                     schema=typed("section", "key", "change", "state", "probe_set", "count")),
        d.results.with_columns(pl.lit("results").alias("section")),
        d.one_sided.with_columns(
            pl.lit("one_sided").alias("section"), pl.col("kind").alias("key"), pl.col("side").alias("change"),
            pl.when(pl.col("side") == "only_a").then(pl.col("value")).alias("value_a"),
            pl.when(pl.col("side") == "only_b").then(pl.col("value")).alias("value_b"),
        ).drop("kind", "side", "value"),
    ]
    out = []
    for p in parts:
        out.append(p.select([(pl.col(n).cast(t) if n in p.columns else pl.lit(None, t)).alias(n)
                             for n, t in schema.items()]))
    return pl.concat(out, how="vertical")


def metadata(d: DiffResult) -> dict[str, str]:
    return {"engine_version": __version__, "run_a": json.dumps(d.a, default=str),
            "run_b": json.dumps(d.b, default=str), "plan_source": d.plan.source,
            "settings": json.dumps(d.settings.__dict__)}


def write_parquet(d: DiffResult, path: Path) -> Path:
    """Write diff.parquet atomically (a temporary file in the same directory, then os.replace)."""
    table = to_frame(d).to_arrow().cast(DIFF)
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata(d).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
