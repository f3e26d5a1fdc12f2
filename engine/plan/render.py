"""How ``engine plan`` shows a plan: a readable text report, or the same as JSON."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from engine.hashing import short
from engine.plan.cost import Estimate, group_estimate, judge_estimate, training_estimate
from engine.plan.model import Plan


def _hp(hp: dict[str, Any]) -> str:
    names = {"n_epochs": "epochs", "batch_size": "batch", "learning_rate_multiplier": "lr×"}
    return ", ".join(f"{names.get(k, k)} {v}" if k != "learning_rate_multiplier" else f"lr×{v}"
                     for k, v in sorted(hp.items())) or "provider defaults"


def plan_to_dict(plan: Plan, reuse: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = plan.config
    max_n = cfg.scheduler.max_n
    training = training_estimate(plan)
    by_cell: dict[tuple[str, str], Estimate] = defaultdict(Estimate)
    by_cell_judge: dict[tuple[str, str], Estimate] = defaultdict(Estimate)
    samples: dict[tuple[str, str], int] = defaultdict(int)
    groups: dict[tuple[str, str], int] = defaultdict(int)
    for g in plan.groups:
        cell = (plan.states[g.state].label, g.probe_set)
        by_cell[cell].add(group_estimate(plan, g, max_n))
        by_cell_judge[cell].add(judge_estimate(plan, g))
        samples[cell] += g.n
        groups[cell] += 1
    total_inf, total_judge = Estimate(), Estimate()
    for e in by_cell.values():
        total_inf.add(e)
    for e in by_cell_judge.values():
        total_judge.add(e)
    train_usd = [t["usd"] for t in training.values()]
    train_known = all(u is not None for u in train_usd)
    unpriced = sorted(total_inf.unpriced | total_judge.unpriced)
    return {
        "name": cfg.name,
        "config_hash": plan.config_hash,
        "plan_key": plan.plan_key,
        "seed": cfg.seed,
        "provider": cfg.provider.kind,
        "counts": {
            "model_states": len(plan.states),
            "base_models": sum(1 for s in plan.states.values() if s.finetune is None),
            "finetunes": len(plan.finetunes),
            "probe_sets": len(plan.probe_sets),
            "sample_groups": len(plan.groups),
            "samples": plan.n_samples,
            "sample_requests": total_inf.requests,
            "judge_requests": total_judge.requests,
        },
        "datasets": [
            {"name": d.name, "source": d.source, "origin": d.origin, "sha256": d.sha256, "pinned": d.pinned,
             "status": d.status, "examples": d.n_examples, "est_tokens": d.est_tokens}
            for d in plan.datasets.values()
        ],
        "states": [
            {"key": s.key, "label": s.label, "base_model": s.base_model, "base_model_id": s.base_model_id,
             "pipeline": s.pipeline, "stage": s.stage, "chain": list(s.chain),
             "parent": plan.states[s.parent].label if s.parent else None}
            for s in plan.states.values()
        ],
        "finetunes": [
            {"key": k, "state": plan.states[k].label, "parent": plan.states[ft.parent_state].label,
             "dataset": ft.dataset, "hyperparameters": ft.hyperparameters, "seed": ft.seed, "suffix": ft.suffix,
             **{f"est_{a}": b for a, b in training[k].items()}}
            for k, ft in plan.finetunes.items()
        ],
        "requests": [
            {"state": st, "probe_set": ps, "groups": groups[(st, ps)], "samples": samples[(st, ps)],
             "requests": e.requests, "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
             "usd": round(e.usd, 4), "judge_requests": by_cell_judge[(st, ps)].requests,
             "judge_usd": round(by_cell_judge[(st, ps)].usd, 4)}
            for (st, ps), e in by_cell.items()
        ],
        "cost": {
            "training_usd": round(sum(u for u in train_usd if u is not None), 4),
            "training_complete": train_known,
            "inference_usd": round(total_inf.usd, 4),
            "judge_usd": round(total_judge.usd, 4),
            "total_usd": round(sum(u for u in train_usd if u is not None) + total_inf.usd + total_judge.usd, 4),
            "unpriced_models": unpriced,
            "prices_taken": cfg.pricing.taken,
            "prices_source": cfg.pricing.source,
            "assumptions": [
                "tokens estimated at ~4 characters per token",
                "n_epochs defaults to 3 where the provider chooses",
                f"up to {max_n} samples of one prompt per request (scheduler.max_n); prompt billed once per request",
            ],
        },
        "warnings": list(plan.warnings),
        **({"reuse": reuse} if reuse is not None else {}),
    }


def _tree(plan: Plan) -> list[str]:
    lines: list[str] = []
    children = plan.children()

    def walk(key: str, prefix: str, last: bool, root: bool) -> None:
        s = plan.states[key]
        if root:
            lines.append(f"  {s.label} ({s.base_model_id})  [{short(key)}]")
        else:
            ft = plan.finetunes[key]
            d = plan.datasets[ft.dataset]
            size = f"{d.n_examples} ex, ~{d.est_tokens:,} tok" if d.n_examples else d.status
            lines.append(f"  {prefix}{'└─' if last else '├─'} {s.pipeline}/{s.stage}: {ft.dataset} ({size}); "
                         f"{_hp(ft.hyperparameters)}; seed {ft.seed}  [{short(key)}]")
        kids = children[key]
        for i, k in enumerate(kids):
            walk(k, prefix + ("" if root else ("   " if last else "│  ")), i == len(kids) - 1, False)

    for key, s in plan.states.items():
        if s.parent is None:
            walk(key, "", True, True)
    return lines


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 or i == 1 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return ["  " + fmt.format(*header), "  " + fmt.format(*["-" * w for w in widths])] + [
        "  " + fmt.format(*[str(c) for c in r]) for r in rows]


def render_text(plan: Plan, reuse: dict[str, Any] | None = None) -> str:
    d = plan_to_dict(plan, reuse)
    c = d["counts"]
    out = [f"Study '{d['name']}'  config {short(d['config_hash'])}  plan {short(d['plan_key'])}  seed {d['seed']}  "
           f"provider {d['provider']}", ""]
    out.append(f"Fine-tune chains: {c['finetunes']} fine-tunes, {c['model_states']} model states "
               f"({c['base_models']} base)")
    out += _tree(plan)
    if d["datasets"]:
        out += ["", "Datasets:"]
        for ds in d["datasets"]:
            size = f"{ds['examples']} examples, ~{ds['est_tokens']:,} tokens" if ds["examples"] else "size unknown"
            sha = short(ds["sha256"]) if ds["sha256"] else "-"
            out.append(f"  {ds['name']}: {ds['source']} {ds['origin']}; {size}; sha256 {sha}; {ds['status']}")
    out += ["", f"Requests: {c['samples']:,} samples in {c['sample_requests']:,} requests, "
                f"{c['judge_requests']:,} judge requests"]
    held = (reuse or {}).get("samples_held", {})
    rows = [[r["state"], r["probe_set"], f"{r['samples']:,}", f"{r['requests']:,}", f"{r['prompt_tokens']:,}",
             f"{r['completion_tokens']:,}", f"{r['judge_requests']:,}", f"${r['usd'] + r['judge_usd']:.2f}"]
            + ([f"{held.get(r['state'] + '|' + r['probe_set'], 0):,}"] if reuse else [])
            for r in d["requests"]]
    out += _table(rows, ["model state", "probe set", "samples", "requests", "in tok", "out tok", "judge req", "est $"]
                  + (["in store"] if reuse else []))
    cost = d["cost"]
    out += ["", "Estimated cost (USD): "
            f"training ${cost['training_usd']:.2f}"
            f"{'' if cost['training_complete'] else ' + unknown (data not fetched)'}, "
            f"sampling ${cost['inference_usd']:.2f}, judging ${cost['judge_usd']:.2f}, "
            f"total ${cost['total_usd']:.2f}"]
    out.append(f"  prices: {cost['prices_source']}, taken {cost['prices_taken']}")
    if cost["unpriced_models"]:
        out.append(f"  no price for: {', '.join(cost['unpriced_models'])} (counted as $0)")
    out += [f"  assumes {a}" for a in cost["assumptions"]]
    if reuse:
        out += ["", f"Store ({reuse.get('store')}): {reuse.get('cached_samples', 0):,} of {c['samples']:,} samples "
                    f"and {reuse.get('done_finetunes', 0)} of {c['finetunes']} fine-tunes already held; they will be "
                    "reused, not asked again"]
        out += [f"  fine-tune held: {label}" for label in reuse.get("finetunes_held", [])]
    if d["warnings"]:
        out += ["", "Warnings:"] + [f"  - {w}" for w in d["warnings"]]
    if plan.config.provider.kind == "sandbox":
        out += ["", "Provider is the local sandbox: nothing is billed."]
    return "\n".join(out)
