"""The How-it-works picture: a residual ensemble as an inline SVG (pure; works offline, no Streamlit).

Students k = 1..K each read the image and give 10 scores z_k (logits); the running sum E is carried from left to
right, multiplied by the learned scale s_k before student k adds z_k: E_k = s_k·E_(k-1) + z_k. Below each sum,
its answer: what the first k students say together.
"""

from __future__ import annotations

import html

COLUMN = 150  # px per student
LEFT = 130  # px for the image on the left
BLUE, GREY, RED = "#1f77b4", "#555555", "#d62728"


def ensemble_svg(students: list[dict], residual: bool = True) -> str:
    """The picture for K students.

    Args:
        students: one dict per student in order: flops (its own FLOPs per image, text) and scale (s_k, a number
            or None for the plain sum / the first student).
        residual: False draws the independent mode's plain average instead of the scaled running sum.

    Returns:
        An <svg> element (width 100%, scales with the page).
    """
    k_total = max(len(students), 1)
    width, height = LEFT + COLUMN * k_total + 20, 318
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'style="max-width:{int(width * 1.5)}px" role="img" aria-label="residual ensemble of {k_total} students" '
             'font-family="sans-serif" font-size="14">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{GREY}"/></marker></defs>',
             _box(10, 20, 100, 50, "image", "28×28 pixels", GREY),
             _line(110, 45, LEFT + COLUMN * (k_total - 1) + COLUMN // 2, 45, arrow=False)]
    for j, student in enumerate(students):
        parts += _column(j, student, residual)
    parts.append(_text(10, 308, "E_k: the sum so far → softmax → the answer of the first k students", GREY, 13,
                       anchor="start"))
    parts.append("</svg>")
    return "".join(parts)


def _column(j: int, student: dict, residual: bool) -> list[str]:
    """Student j+1: its box, its logits z going down into the running sum, the scale on the arrow from the left."""
    k, cx = j + 1, LEFT + COLUMN * j + COLUMN // 2
    out = [_line(cx, 45, cx, 78), _box(cx - 68, 80, 136, 50, f"student {k}", f"{student.get('flops', '')} FLOPs",
                                       BLUE),
           _line(cx, 130, cx, 182), _text(cx + 6, 160, f"z_{k}", BLUE, 14, anchor="start")]
    out.append(f'<circle cx="{cx}" cy="200" r="17" fill="white" stroke="{RED}" stroke-width="2"/>')
    out.append(_text(cx, 206, "+" if (k > 1 and residual) else ("=" if k == 1 else "avg"), RED, 18 if residual
                     else 11))
    out.append(_text(cx, 240, f"E_{k}", RED, 15, bold=True))
    out.append(_text(cx, 260, "answer of", GREY, 12))
    out.append(_text(cx, 275, f"students 1–{k}" if k > 1 else "student 1", GREY, 12))
    if k > 1:
        x0, x1 = cx - COLUMN + 19, cx - 19
        out.append(_line(x0, 200, x1, 200))
        scale = student.get("scale")
        label = (f"× s_{k} = {scale:.2f}" if isinstance(scale, (int, float)) else f"× s_{k}") if residual else ""
        if label:
            out.append(f'<rect x="{(x0 + x1) / 2 - 48}" y="206" width="96" height="20" rx="4" fill="#fff6e0" '
                       f'stroke="#e0a000"/>')
            out.append(_text((x0 + x1) / 2, 221, label, "#8a5a00", 12))
    return out


def _box(x: float, y: float, w: float, h: float, title: str, sub: str, color: str) -> str:
    return (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="white" stroke="{color}" '
            f'stroke-width="2"/>' + _text(x + w / 2, y + 21, title, color, 15, bold=True)
            + _text(x + w / 2, y + 40, sub, GREY, 12))


def _line(x0: float, y0: float, x1: float, y1: float, arrow: bool = True) -> str:
    end = ' marker-end="url(#arrow)"' if arrow else ""
    return f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{GREY}" stroke-width="1.6"{end}/>'


def _text(x: float, y: float, text: str, color: str, size: int, bold: bool = False, anchor: str = "middle") -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x}" y="{y}" fill="{color}" font-size="{size}" text-anchor="{anchor}"{weight}>'
            f"{html.escape(text)}</text>")


ORANGE, GREEN = "#ff7f0e", "#2ca02c"
TOP, LOSS_Y, LABEL_Y = 38, 168, 262  # the teacher's line, the loss boxes' top, the label's line


def distillation_svg(k_total: int, residual: bool = True, alpha: float | None = None,
                     temperature: float | None = None) -> str:
    """The teacher in the picture: its soft answers softmax(t/T) flow into every student's loss with weight 1 - α,
    the true label y with weight α, and student k's own answer (E_k in a residual ensemble, z_k alone otherwise).

    Args:
        k_total: students drawn. alpha, temperature: the run's α and T (written on the arrows when given).
    Returns:
        An <svg> element (width 100%).
    """
    k_total = max(k_total, 1)
    width, height = LEFT + 30 + COLUMN * k_total, 318
    a = f"α = {alpha:g}" if alpha is not None else "α"
    weight = f"1 − α = {1 - alpha:.2g}" if alpha is not None else "1 − α"
    soft = f"softmax(t / T), T = {temperature:g}" if temperature is not None else "softmax(t / T)"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'style="max-width:{int(width * 1.5)}px" role="img" aria-label="distillation: the teacher and '
             f'{k_total} students" font-family="sans-serif" font-size="14">',
             '<defs><marker id="arrow-kd" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{GREY}"/></marker></defs>',
             _box(10, TOP - 25, 130, 50, "teacher", "big CNN, logits t", ORANGE),
             _kd_line(140, TOP, LEFT + 30 + COLUMN * (k_total - 1) + 30, TOP, ORANGE, arrow=False),
             _text(150, TOP - 8, f"soft answers: {soft}", ORANGE, 12, anchor="start"),
             _box(10, LABEL_Y - 25, 130, 50, "true label y", "e.g. 7", GREEN),
             _kd_line(140, LABEL_Y, LEFT + 30 + COLUMN * (k_total - 1) + 75, LABEL_Y, GREEN, arrow=False)]
    for j in range(k_total):
        k, x = j + 1, LEFT + 30 + COLUMN * j  # x: the loss box's left edge
        own = (f"E_{k} (1–{k})" if k > 1 else "z_1") if residual else f"z_{k} alone"
        parts += [_kd_line(x + 22, TOP, x + 22, LOSS_Y, ORANGE), _text(x + 18, 150, weight if j == 0 else
                                                                        "1 − α", ORANGE, 12, anchor="end"),
                  _box(x + 40, 70, 100, 44, f"student {k}", own, BLUE), _kd_line(x + 90, 114, x + 90, LOSS_Y, BLUE),
                  _box(x, LOSS_Y, 140, 50, f"loss {k}", "α·CE + (1−α)·T²·KL", RED),
                  _kd_line(x + 75, LABEL_Y, x + 75, LOSS_Y + 50, GREEN),
                  _text(x + 80, LABEL_Y - 12, a if j == 0 else "α", GREEN, 12, anchor="start")]
    parts.append(_text(10, 308, "Each student learns by making its loss small: copy the teacher's soft answers "
                                "(KL) and get the label right (CE).", GREY, 13, anchor="start"))
    parts.append("</svg>")
    return "".join(parts)


def _kd_line(x0: float, y0: float, x1: float, y1: float, color: str, arrow: bool = True) -> str:
    end = ' marker-end="url(#arrow-kd)"' if arrow else ""
    return f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{color}" stroke-width="2"{end}/>'
