"""Results that flag themselves: a run's summary names what a reader must not miss.

- `below_chance`: a headline metric worse than the chance level (the same metric for predictions
  that ignore the data), with whether its 95 % interval excludes chance;
- `beaten_by_variant`: an ablation or baseline variant better than the model, by a paired
  interval of the model's weighted-F1 gain that lies wholly below 0;
- `calibration_worse`: calibration that raised the top-label ECE;
- `few_groups`: intervals from a bootstrap over fewer than `MIN_GROUPS` groups, too few for
  the interval to mean much;
- `sweep_worse_than_start` (`fusion sweep`): the best configuration of the training folds scored
  worse on the held-out test than the configuration the sweep started from.

Each flag is {"code", "target", "message"}; the printed summary, the run's JSON and MLflow tags
carry them, and the reports show them.
"""

from __future__ import annotations

from typing import Any

MIN_GROUPS = 10
HIGHER = ("accuracy", "balanced_accuracy", "uar", "f1_weighted", "f1_macro", "qwk", "auc_ovr")
LOWER = ("brier",)


def flag(code: str, target: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "target": target, "message": message}


def target_flags(name: str, t: dict[str, Any]) -> list[dict[str, Any]]:
    """The flags of one target's summary (as `fusion train` writes it)."""
    out = []
    metrics, chance = t.get("metrics", {}), t.get("chance", {})
    model = metrics.get("model", {})
    worse = []
    for k in (*HIGHER, *LOWER):
        if k not in model or k not in chance or chance[k] != chance[k]:
            continue
        s, c, lower = model[k], chance[k], k in LOWER
        if (s["mean"] > c) if lower else (s["mean"] < c):
            sure = "ci_high" in s and ((s["ci_low"] > c) if lower else (s["ci_high"] < c))
            worse.append(f"{k} {s['mean']:.3f} vs chance {c:.3f}{' (lower is better)' if lower else ''}"
                         f"{', its 95 % interval excludes chance' if sure else ''}")
    if worse:
        out.append(flag("below_chance", name, f"{name}: worse than chance: " + "; ".join(worse)))
    for variant, stats in metrics.items():
        gain = stats.get("f1_weighted_gain_of_model") if isinstance(stats, dict) else None
        if gain and gain.get("ci_high", 0.0) < 0:
            out.append(flag("beaten_by_variant", name,
                            f"{name}: beaten by the variant {variant}: the model's weighted-F1 gain over it is "
                            f"{gain['mean']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] (paired, 95 %)"))
    raw = metrics.get("uncalibrated", {}).get("ece")
    if raw and "ece" in model and model["ece"]["mean"] > raw["mean"]:
        out.append(flag("calibration_worse", name,
                        f"{name}: calibration made the top-label ECE worse: {model['ece']['mean']:.3f} calibrated vs "
                        f"{raw['mean']:.3f} uncalibrated"))
    groups = t.get("n_groups")
    if groups is not None and groups < MIN_GROUPS:
        out.append(flag("few_groups", name,
                        f"{name}: the intervals come from a bootstrap over {groups} {t.get('group_by', 'subject')} "
                        f"groups; with fewer than {MIN_GROUPS} they are unreliable"))
    return out


def run_flags(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target's flags."""
    return [f for name, t in summary.get("targets", {}).items() for f in target_flags(name, t)]


def flag_tags(flags: list[dict[str, Any]]) -> dict[str, str]:
    """MLflow tags: `flags` (the codes) and one `flag.<target>.<code>` per flag (its message)."""
    if not flags:
        return {"flags": "none"}
    tags = {"flags": ",".join(sorted({f["code"] for f in flags}))}
    for f in flags:
        key = f"flag.{f['target'] or 'run'}.{f['code']}"
        tags[key] = (tags[key] + " | " if key in tags else "") + f["message"]
    return {k: v[:4900] for k, v in tags.items()}


def format_flags(flags: list[dict[str, Any]]) -> list[str]:
    """Printed lines: one per flag."""
    return [f"FLAG {f['code']}: {f['message']}" for f in flags]
