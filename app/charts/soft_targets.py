"""The soft-target panel's charts and words: one input's distillation loss (pkd.kd.SoftTargets as a dict) -> two
plotly bar charts (the teacher at T = 1 beside T; the student beside the teacher at T) and the sentences a
first-year student reads. Pure: no Streamlit, no model.
"""

from __future__ import annotations

import plotly.graph_objects as go

PLAIN, TEACHER, STUDENT = "#b0b0b0", "#ff7f0e", "#1f77b4"
MIN_SHOWN = 0.005  # probabilities below 0.5% get no number on their bar (they would be unreadable)


def num(value: float) -> str:
    """A loss figure with 3 significant digits ('0.00374', '1.52', '12.3')."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def share(p: float) -> str:
    """A probability in % as a first-year student reads it: '92%', '0.31%', 'less than 0.01%'."""
    return "less than 0.01%" if p < 1e-4 else f"{100 * p:.2f}%" if p < 0.01 else f"{100 * p:.0f}%"


def t_text(temperature: float) -> str:
    """'4' or '2.5': T as the slider shows it."""
    return f"{temperature:g}"


def _bars(probs: list[float], names: list[str], name: str, color: str) -> go.Bar:
    return go.Bar(x=list(names), y=[100 * p for p in probs], name=name, marker_color=color,
                  text=[f"{100 * p:.0f}%" if p >= MIN_SHOWN else "" for p in probs], textposition="outside",
                  textfont={"size": 13},
                  cliponaxis=False, hovertemplate=f"{name}<br>%{{x}}: %{{y:.2f}}%<extra></extra>")


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(height=300, barmode="group", bargap=0.25, title={"text": title, "font": {"size": 15}},
                      yaxis={"range": [0, 112], "title": "probability (%)", "ticksuffix": "%"},
                      xaxis={"type": "category", "title": None},
                      legend={"orientation": "h", "y": -0.12, "x": 0}, margin={"l": 50, "r": 10, "t": 40, "b": 10})
    return fig


def teacher_figure(parts: dict, names: list[str]) -> go.Figure:
    """The teacher's probabilities at T = 1 (grey) beside the same at T (orange): the soft targets."""
    t = t_text(parts["temperature"])
    fig = go.Figure([_bars(parts["teacher_plain"], names, "teacher at T = 1", PLAIN),
                     _bars(parts["teacher_soft"], names, f"teacher at T = {t} (soft targets)", TEACHER)])
    return _layout(fig, f"The teacher's answer, plain and softened by T = {t}")


def student_figure(parts: dict, names: list[str], who: str) -> go.Figure:
    """The student's probabilities at T (blue) beside the teacher's soft targets (orange): what the KL compares."""
    t = t_text(parts["temperature"])
    fig = go.Figure([_bars(parts["teacher_soft"], names, f"teacher at T = {t}", TEACHER),
                     _bars(parts["student_soft"], names, f"{who} at T = {t}", STUDENT)])
    return _layout(fig, f"{who[0].upper() + who[1:]} beside the teacher, both at T = {t}")


def _ranked(probs: list[float]) -> list[int]:
    return sorted(range(len(probs)), key=lambda i: -probs[i])


def temperature_words(parts: dict, names: list[str]) -> str:
    """What T did to the teacher's answer, with this input's numbers."""
    plain, soft, t = parts["teacher_plain"], parts["teacher_soft"], t_text(parts["temperature"])
    first, second = _ranked(soft)[:2]
    if parts["temperature"] == 1:
        return (f"At T = 1 the soft targets are the teacher's ordinary probabilities: **{share(plain[first])}** "
                f"for **{names[first]}**, **{share(plain[second])}** for the runner-up **{names[second]}**. "
                f"Drag T up to see what it thinks of the other classes.")
    return (f"At T = 1 the teacher gives **{names[first]}** {share(plain[first])} and the runner-up "
            f"**{names[second]}** {share(plain[second])}. Divided by T = {t} before the softmax, its "
            f"scores give **{names[first]}** {share(soft[first])} and **{names[second]}** "
            f"{share(soft[second])}: the small probabilities become visible. They say which wrong answers the "
            f"teacher finds similar (this {names[first]} looks a bit like a {names[second]}), something a label "
            f"alone never tells the student.")


def loss_words(parts: dict, names: list[str], who: str) -> str:
    """The KL and what alpha mixes, as a sentence with the numbers filled in."""
    a, t, label = parts["alpha"], t_text(parts["temperature"]), names[parts["label"]]
    kl = parts["kl"]
    closeness = ("almost exactly the same as" if kl < 0.01 else "close to" if kl < 0.1 else "quite different from")
    return (f"**KL = {num(kl)}**: how different the blue bars are from the orange ones ({who}'s answer is "
            f"{closeness} the teacher's; 0 would be a perfect copy). The number training makes small for this "
            f"image is **α × label error + (1 − α) × T² × KL** = {a:g} × {num(parts['hard'])} + {1 - a:.2g} × "
            f"{t}² × {num(kl)} = **{num(parts['loss'])}**. With α = {a:g}, {100 * a:.0f}% of the weight goes to "
            f"getting the true label **{label}** right and {100 * (1 - a):.0f}% to copying the teacher's soft "
            f"answers.")
