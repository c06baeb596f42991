/* The run's accuracy against FLOPs as a small inline SVG: a dot per prefix 1..k (the run's test accuracy), the
 * teacher as a star, the early-exit curve (test accuracy against mean FLOPs, one point per confidence), the chosen
 * confidence's point and the prefix the current drawing stopped at ringed. FLOPs on a log axis. */
(function () {
  "use strict";
  const W = 420, H = 300, L = 56, R = 16, T = 14, B = 44;
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Where the legend (214 x 40 px) goes: the bottom right corner of the plot unless a point lies there (a clip run's
   *  teacher, far below its students), then the top right, the bottom left, the top left. */
  function legendCorner(points) {
    const corners = [[W - R - 214, H - B - 40], [W - R - 214, T + 2], [L + 4, H - B - 40], [L + 4, T + 2]];
    const free = corners.find(([x, y]) => !points.some(([px, py]) => px > x - 12 && px < x + 226 && py > y - 12 &&
                                                                     py < y + 52));
    return (free || corners[0]).join(" ");
  }

  function draw(box, run, threshold, exitK) {
    const dots = run.prefixRows.filter((r) => r.accuracy !== null);
    const curve = run.exitCurve;
    const flops = [...dots.map((r) => r.flops), ...curve.map((p) => p.flops), run.teacherFlops].filter((f) => f > 0);
    const accs = [...dots.map((r) => r.accuracy), ...curve.map((p) => p.accuracy), run.teacherAcc]
      .filter((a) => a !== null && a !== undefined);
    const x0 = Math.log10(Math.min(...flops) / 1.5), x1 = Math.log10(Math.max(...flops) * 1.5);
    const yLow = Math.min(...accs), yHigh = Math.max(...accs), pad = Math.max((yHigh - yLow) * 0.12, 0.002);
    const y0 = yLow - pad, y1 = Math.min(yHigh + pad, 1.0001);
    const sx = (f) => L + (Math.log10(f) - x0) / (x1 - x0) * (W - L - R);
    const sy = (a) => T + (1 - (a - y0) / (y1 - y0)) * (H - T - B);
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
                            "aria-label": "accuracy against FLOPs", "font-size": 11 });
    svg.appendChild(el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafbfc", stroke: "#ccd" }));
    for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) {  // a tick per power of ten
      svg.appendChild(el("line", { x1: sx(10 ** e), x2: sx(10 ** e), y1: T, y2: H - B, stroke: "#e4e7ee" }));
      const label = e >= 6 ? `${10 ** (e - 6)} M` : `${10 ** (e - 3)} k`;
      svg.appendChild(el("text", { x: sx(10 ** e), y: H - B + 14, "text-anchor": "middle" }, label));
    }
    for (let i = 0; i <= 4; i++) {
      const a = y0 + (y1 - y0) * i / 4;
      svg.appendChild(el("text", { x: L - 6, y: sy(a) + 4, "text-anchor": "end" }, `${(100 * a).toFixed(1)}%`));
    }
    const per = run.mode === "clip" ? "clip" : "digit";
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle" }, `FLOPs per ${per} (log scale)`));
    svg.appendChild(el("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
                                 transform: `rotate(-90 12 ${(T + H - B) / 2})` }, "test accuracy"));
    if (curve.length) {
      const path = curve.map((p, i) => `${i ? "L" : "M"}${sx(p.flops).toFixed(1)},${sy(p.accuracy).toFixed(1)}`);
      svg.appendChild(el("path", { d: path.join(" "), fill: "none", stroke: "#f58518", "stroke-width": 2 }));
      const chosen = curve.find((p) => Math.abs(p.confidence - threshold) < 1e-9);
      if (chosen) {
        svg.appendChild(el("circle", { cx: sx(chosen.flops), cy: sy(chosen.accuracy), r: 5, fill: "#f58518" }));
      }
    }
    const points = [...dots.map((r) => [sx(r.flops), sy(r.accuracy)]),
                    ...curve.map((p) => [sx(p.flops), sy(p.accuracy)])];  // where the legend must not go
    if (run.teacherAcc !== null && run.teacherFlops > 0) points.push([sx(run.teacherFlops), sy(run.teacherAcc)]);
    let prev = null;
    dots.forEach((r) => {
      const x = sx(r.flops), y = sy(r.accuracy);
      if (prev) svg.appendChild(el("line", { x1: prev[0], y1: prev[1], x2: x, y2: y, stroke: "#4c78a8" }));
      prev = [x, y];
    });
    dots.forEach((r) => {
      const x = sx(r.flops), y = sy(r.accuracy);
      if (r.students === exitK + 1) {
        svg.appendChild(el("circle", { cx: x, cy: y, r: 9, fill: "none", stroke: "#d62728", "stroke-width": 2 }));
      }
      svg.appendChild(el("circle", { cx: x, cy: y, r: 4.5, fill: "#4c78a8" }));
      svg.appendChild(el("text", { x: x, y: y - 10, "text-anchor": "middle" }, `${r.students}`));
    });
    if (run.teacherAcc !== null && run.teacherFlops > 0) {
      const x = sx(run.teacherFlops), y = sy(run.teacherAcc);
      svg.appendChild(el("text", { x: x, y: y + 6, "text-anchor": "middle", "font-size": 18, fill: "#54a24b" }, "★"));
      svg.appendChild(el("text", { x: x - 8, y: y - 10, "text-anchor": "end" }, "teacher"));
    }
    const legend = el("g", { transform: `translate(${legendCorner(points)})` });
    legend.appendChild(el("circle", { cx: 12, cy: 14, r: 4.5, fill: "#4c78a8" }));
    legend.appendChild(el("text", { x: 22, y: 18 }, "students 1..k (number k)"));
    if (curve.length) {
      legend.appendChild(el("line", { x1: 6, x2: 18, y1: 30, y2: 30, stroke: "#f58518", "stroke-width": 2 }));
      legend.appendChild(el("text", { x: 22, y: 34 }, "early exit, one point per confidence"));
    }
    svg.appendChild(legend);
    box.replaceChildren(svg);
  }

  window.pkdChart = { draw: draw };
})();
