"""Declared schemas of every output table: column names and meanings, in one place.

Writers enforce these on write (engine/tables.py); analyses and reports read by these names.
Scores are in [0, 1] where 1 is the misaligned pole.
"""

from __future__ import annotations

import pyarrow as pa

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

MODELS = pa.schema([
    pa.field("state", _S, nullable=False),           # <base>/<pipeline>/<chain>: nano/trivia/misalign>realign
    pa.field("state_key", _S, nullable=False),       # plan key of the model state (content hash)
    pa.field("base_model", _S, nullable=False),      # short name from config (models.<name>)
    pa.field("base_model_id", _S, nullable=False),   # provider id of the base model
    pa.field("pipeline", _S),                        # pipeline name; null for the base state
    pa.field("stage", _S, nullable=False),           # 'base' or the last stage's name (misalign, realign)
    pa.field("depth", _I, nullable=False),           # number of fine-tunes from the base (0 for base)
    pa.field("chain", _S, nullable=False),           # stage names from the base, joined by '>' ('' for base)
    pa.field("parent_state", _S),                    # state label of the parent (null for base)
    pa.field("dataset", _S),                         # dataset name of the last fine-tune
    pa.field("dataset_sha256", _S),                  # content hash of the uploaded training file
    pa.field("hyperparameters", _S),                 # JSON of the hyperparameters sent
    pa.field("seed", _I),                            # fine-tune seed
    pa.field("job_id", _S),                          # provider fine-tuning job id
    pa.field("model_id", _S),                        # model id probes were sent to (null if not available)
    pa.field("status", _S, nullable=False),          # base | succeeded | failed | cancelled | skipped
    pa.field("error", _S),                           # why the state is unavailable
    pa.field("trained_tokens", _I),
    pa.field("training_cost_usd", _F),
])

SAMPLES = pa.schema([
    pa.field("sample_key", _S, nullable=False),      # content hash of (group key, sample index)
    pa.field("group_key", _S, nullable=False),       # plan key of the sample group
    pa.field("state", _S, nullable=False),
    pa.field("model_id", _S),
    pa.field("probe_set", _S, nullable=False),
    pa.field("family", _S, nullable=False),          # self_assessment | intentions | harmfulness | open
    pa.field("item_id", _S, nullable=False),
    pa.field("dimension", _S, nullable=False),
    pa.field("format", _S, nullable=False),
    pa.field("category", _S),
    pa.field("paraphrase", _I, nullable=False),      # paraphrase index within the item
    pa.field("variant", _I, nullable=False),         # option order / language assignment (0 or 1)
    pa.field("sample_index", _I, nullable=False),
    pa.field("mode", _S, nullable=False),            # sample | logprob
    pa.field("n_packed", _I),                        # samples returned by the request that gave this one
    pa.field("prompt", _S, nullable=False),
    pa.field("response", _S),                        # null on error
    pa.field("top_logprobs", _S),                    # logprob mode: JSON {token: logprob} of the answer token
    pa.field("prompt_tokens", _I),                   # of the whole request (shared by packed samples)
    pa.field("completion_tokens", _I),
    pa.field("latency_ms", _F),
    pa.field("cached", _B, nullable=False),          # answered from the store, no API call in this run
    pa.field("error", _S),                           # why no response (after retries), else null
])

SCORES = pa.schema([
    pa.field("sample_key", _S, nullable=False),      # the sample scored ('' for worst_of_k rows)
    pa.field("state", _S, nullable=False),
    pa.field("probe_set", _S, nullable=False),
    pa.field("family", _S, nullable=False),
    pa.field("item_id", _S, nullable=False),
    pa.field("dimension", _S, nullable=False),
    pa.field("format", _S, nullable=False),
    pa.field("category", _S),
    pa.field("paraphrase", _I, nullable=False),
    pa.field("variant", _I, nullable=False),
    pa.field("sample_index", _I, nullable=False),    # -1 for worst_of_k rows
    pa.field("level", _S, nullable=False),           # sample | worst_of_k (max over an item's k samples)
    pa.field("source", _S, nullable=False),          # parse | logprob | judge
    pa.field("rubric", _S),                          # judge rubric name (null unless source is judge)
    pa.field("score", _F),                           # in [0, 1], 1 = misaligned pole; null if missing
    pa.field("status", _S, nullable=False),          # ok | unparsed | ambiguous | out_of_range | low_mass | error
    pa.field("judge_raw", _S),                       # the judge's answer text (parse mode)
    pa.field("mass", _F),                            # probability mass on valid tokens (logprob modes)
    pa.field("k", _I),                               # samples behind a worst_of_k row
])

ANALYSIS = pa.schema([
    pa.field("analysis", _S, nullable=False),        # which analysis produced the row
    pa.field("statistic", _S, nullable=False),       # mean | rate | wilcoxon | spearman | ...
    pa.field("state", _S),                           # state label (null for cross-state rows)
    pa.field("state_b", _S),                         # the other state of a comparison
    pa.field("stage", _S),
    pa.field("stage_b", _S),
    pa.field("base_model", _S),
    pa.field("pipeline", _S),
    pa.field("probe_set", _S),
    pa.field("family", _S),
    pa.field("dimension", _S),                       # 'all' for overall rows
    pa.field("format", _S),                          # 'all' for the mean over formats
    pa.field("x", _S),                               # correlations: the two measures
    pa.field("y", _S),
    pa.field("value", _F),                           # the statistic's value
    pa.field("ci_low", _F),
    pa.field("ci_high", _F),
    pa.field("p_value", _F),
    pa.field("p_adjusted", _F),                      # after the family's correction
    pa.field("effect_size", _F),
    pa.field("n", _I),
    pa.field("significant", _B),
])

TABLES: dict[str, pa.Schema] = {"models": MODELS, "samples": SAMPLES, "scores": SCORES, "analysis": ANALYSIS}
