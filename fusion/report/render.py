"""HTML of the participant and cohort reports: one self-contained file each (styles inline,
figures as data URIs, no script, no external resource), laid out for A4 printing with each
part starting on its own page. The Jinja2 templates and the style sheet are in `templates/`."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).with_name("templates")

DISCLAIMER = ("Research use only. This report is not a diagnosis and must not be used on its own to make "
              "clinical decisions about this person. It shows what a statistical model estimates from recorded "
              "behaviour; a qualified clinician's assessment takes precedence.")
COHORT_DISCLAIMER = ("Research use only. This report describes how a statistical model performed on a research "
                     "cohort; it is not a diagnostic test, and its figures need not hold for other people, "
                     "recordings or settings. Decisions about individuals rest with qualified clinicians.")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["heading"] = heading
    env.filters["cell"] = cell
    return env


def cell(value: Any) -> str:
    """A table cell: floats to 3 decimals, a missing number as a dash, anything else as text."""
    if isinstance(value, float):
        return "–" if value != value else f"{value:.3f}"
    return "" if value is None else str(value)


def heading(name: str) -> str:
    """A target's name as a heading: short names are acronyms (PTSD), others capitalised."""
    return name.upper() if len(name) <= 4 else name[:1].upper() + name[1:]


def _globals() -> dict[str, Any]:
    return {"disclaimer": DISCLAIMER,
            "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}


def participant_html(p: dict[str, Any], card: dict[str, Any], *, warnings: list[str], run_id: str | None,
                     hide_text: bool) -> str:
    return _env().get_template("participant.html.j2").render(
        title=f"Participant {p['id']}", p=p, card=card, warnings=warnings, run_id=run_id, hide_text=hide_text,
        **_globals())


def cohort_html(c: dict[str, Any], card: dict[str, Any]) -> str:
    return _env().get_template("cohort.html.j2").render(title=f"Cohort report: {c['model']}", c=c, card=card,
                                                        **{**_globals(), "disclaimer": COHORT_DISCLAIMER})



def compare_html(**context: Any) -> str:
    """`fusion compare`'s page: the same escaping and Content-Security-Policy as the reports
    (run and experiment names are user text)."""
    return _env().get_template("compare.html.j2").render(**context, **_globals())
