"""Lesson mode's guided path: seven numbered steps through the pages (Results -> Playground -> step-through ->
early exit -> soft targets -> Clips backwards -> How it works). Each step is a card at the top of its page naming
one thing to do on a real widget (which pulses until it is done), ticks off when the learner has done it, and asks
one question for the class. The step shown and the ticks live in the URL (`?lesson=1&step=3&ticked=1,2`), so a
teacher shares step 3.

STEPS and the progress helpers are pure (unit-tested); `card` draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import streamlit as st

from app import common

STEP_KEY, DONE_KEY = "lesson_step", "lesson_done"  # session keys, in the URL as step= and ticked=
EVENTS_KEY = "lesson_events"  # what the learner did that no widget keeps (a button press)
TICKED, OPEN = ":green[:material/check_circle:]", ":material/radio_button_unchecked:"  # Streamlit's own icon font
CLIP_RUN = "moving-mnist"  # the shipped video run the Clips step opens when an image run is shown


@dataclass(frozen=True)
class Step:
    """One step of the path.

    Attributes:
        page: the page it happens on (app/main.py's PAGES name). title: a few words.
        task: the one thing to do, naming the widget as the page labels it.
        widget: the key of that widget (it pulses until the step is done).
        done: whether the learner did it, from session state (and the events).
        question: one question for the class.
    """

    page: str
    title: str
    task: str
    widget: str
    done: Callable[[Mapping[str, Any]], bool]
    question: str


def _at_least(key: str, value: float) -> Callable[[Mapping[str, Any]], bool]:
    return lambda state: isinstance(state.get(key), (int, float)) and state.get(key) >= value


def _event(name: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda state: name in (state.get(EVENTS_KEY) or ())


STEPS = [
    Step("results", "What an answer costs",
         "On the chart, set **FLOPs axis** to **linear**: the students crowd at the left, the teacher sits far right.",
         "results_xscale", lambda state: state.get("results_xscale") == "linear",
         "How many times the work of student 1 does the teacher need for one image?"),
    Step("playground", "Ask the students",
         "**Draw a 7** on the black canvas (or press **Random digit**).", "canvas", _event("answered"),
         "What does student 1 say, and how sure is it?"),
    Step("playground", "Add students one at a time",
         "Press **Add the next student** until the answer is right (or every student is in).", "pg_step_next",
         _event("added"), "Did a new student change the answer, or only how sure it is? What did it cost?"),
    Step("playground", "Stop early",
         "In **Anytime mode**, drag the sureness slider to **0.99**: how many students does this digit need now?",
         "pg_conf", _at_least("pg_conf", 0.99), "Why does a sloppy digit need more students than a neat one?"),
    Step("playground", "The teacher's soft answers",
         "In **soft targets**, drag **Temperature T** to **5** or more and watch the orange bars.", "soft_T",
         _at_least("soft_T", 5.0), "Which wrong digit does the teacher find most like this one? Why would a "
         "student want to know that?"),
    Step("clips", "Play a clip backwards",
         "Switch on **Play it backwards**: does the teacher's answer change? And the students'?", "clips_back",
         lambda state: state.get("clips_back") is True, "Why can the students tell the direction and the teacher "
         "cannot?"),
    Step("how", "Inside a student",
         "Drag the **Reading** slider to the end and watch the student's memory and its answer change.",
         "how_read", _event("read_all"), "How many numbers does the student remember after the first step, and "
         "after the last?"),
]


def parse_done(text: Any) -> list[int]:
    """'1,3' -> [1, 3]: the ticked steps in a link (anything else is dropped)."""
    parts = str(text or "").split(",")
    return sorted({int(p) for p in parts if p.strip().isdigit() and 1 <= int(p) <= len(STEPS)})


def done_text(steps: list[int]) -> str:
    return ",".join(str(s) for s in sorted(set(steps)))


def tick(state: Mapping[str, Any]) -> list[int]:
    """The steps ticked so far: those in the state's done list plus those whose action the state now shows."""
    ticked = set(parse_done(state.get(DONE_KEY)))
    return sorted(ticked | {n for n, step in enumerate(STEPS, 1) if step.done(state)})


def current(state: Mapping[str, Any]) -> int:
    """The step shown (1..7; 1 when unset or bad)."""
    value = state.get(STEP_KEY)
    return value if isinstance(value, int) and 1 <= value <= len(STEPS) else 1


# ------------------------------------------------------------------------------------------------ Streamlit side

def note(event: str) -> None:
    """Record an action no widget keeps (a button press) for the lesson's ticks."""
    events = st.session_state.setdefault(EVENTS_KEY, set())
    events.add(event)


def _run_for(page: str) -> str | None:
    """The run a step's page needs, when the selected one will not do: a clip run for Clips, an image run elsewhere."""
    run = common.selected_run()
    kind = common.dataset_kind(run.setting("data", "dataset")) if run is not None else None
    if page == "clips" and kind != "clip":
        wanted = common.pretrained_dir() / CLIP_RUN
    elif page in ("playground", "how") and kind == "clip":
        wanted = common.pretrained_dir() / common.SHIPPED_NAME
    else:
        return None
    return str(wanted) if wanted.is_dir() else None


def go_to(step: int) -> None:
    """Show step `step` and open its page (with a run that page can show)."""
    ss = st.session_state
    ss[STEP_KEY] = step
    page = STEPS[step - 1].page
    run = _run_for(page)
    if run:
        ss[common.RUN_KEY] = run
    ss[common.GOTO_KEY] = page


def _highlight(widget: str) -> None:
    """A pulsing outline around the step's widget (Streamlit gives a keyed widget the class st-key-<key>)."""
    st.markdown(f"""<style>
@keyframes pkd-pulse {{ 0% {{ box-shadow: 0 0 0 0 rgba(255,127,14,.7); }}
                        70% {{ box-shadow: 0 0 0 12px rgba(255,127,14,0); }} 100% {{ box-shadow: 0 0 0 0 rgba(255,127,14,0); }} }}
.st-key-{widget} {{ outline: 3px solid #ff7f0e; outline-offset: 4px; border-radius: 6px;
                   animation: pkd-pulse 1.6s infinite; }}
</style>""", unsafe_allow_html=True)


def card(page: str) -> None:
    """The lesson card at the top of the page (lesson mode only): where the path stands, this step's task with
    its tick, its question, and the way on. Ticks are taken from the state first (an action just done)."""
    ss = st.session_state
    if not common.lesson_mode():
        return
    ticked = tick(ss)
    ss[DONE_KEY] = done_text(ticked)
    n = current(ss)
    ss[STEP_KEY] = n
    step = STEPS[n - 1]
    done = n in ticked
    with st.container(border=True, key="lesson_card"):
        path = " · ".join((TICKED if i in ticked else OPEN) + (f" **{i} {s.title}**" if i == n else f" {i}")
                          for i, s in enumerate(STEPS, 1))
        st.caption(f"Lesson, {len(ticked)} of {len(STEPS)} steps done: {path}")
        st.markdown(f"#### Step {n} of {len(STEPS)}: {step.title}")
        if step.page != page:
            st.markdown(f"This step happens on the **{_page_title(step.page)}** page.")
            st.button(f"Go to {_page_title(step.page)}", key="lesson_go", on_click=go_to, args=(n,),
                      type="primary")
            return
        st.markdown((f"{TICKED} **Done:** " if done else ":material/touch_app: **Do this:** ") + step.task)
        st.markdown(f"**Question for the class:** {step.question}")
        cols = st.columns([1, 1, 3])
        cols[0].button("← Back", key="lesson_back", on_click=go_to, args=(n - 1,), disabled=n == 1,
                       width="stretch")
        cols[1].button("Next step →" if n < len(STEPS) else "Finished", key="lesson_next", on_click=go_to,
                       args=(n + 1,), disabled=n == len(STEPS), type="primary" if done else "secondary",
                       width="stretch")
    if not done:
        _highlight(step.widget)


def _page_title(page: str) -> str:
    return {"results": "Results", "playground": "Playground", "clips": "Clips", "how": "How it works"}.get(page, page)
