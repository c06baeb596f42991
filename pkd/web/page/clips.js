/* The clip page of a video run (mode "clip" in run.js): a test clip or a clip made from the drawing, played on a
 * loop forwards or backwards, and every prefix's answer both ways round. pkd.js mounts it and keeps the table, the
 * early exit, the chart and the drawing canvas (shared with the digit page).
 *
 * The teacher averages its frames, so a clip and its reverse get the same answer from it; the students read the
 * frames in order, so their answers can differ (for digit-and-motion classes they should name reversed motions).
 */
(function () {
  "use strict";
  const maker = window.pkdClipMaker;
  const $ = (id) => document.getElementById(id);
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const argmax = (p) => p.reduce((best, v, i) => v > p[best] ? i : best, 0);

  /** The clip on a loop on `canvas` (enlarged, pixels kept sharp), and every frame in a row on `strip` with the
   *  frame showing outlined. */
  function Player(canvas, strip, counter, T, S, frameMs) {
    const frame = document.createElement("canvas");
    frame.width = S; frame.height = S;
    const fctx = frame.getContext("2d"), image = fctx.createImageData(S, S);
    const cell = Math.min(Math.floor(strip.width / T), 64);
    strip.height = cell;
    let frames = null, t = 0, timer = null;
    function paint(i) {  // frame i into the offscreen S x S canvas
      for (let p = 0; p < S * S; p++) {
        const v = Math.round(255 * frames[i * S * S + p]);
        image.data[4 * p] = image.data[4 * p + 1] = image.data[4 * p + 2] = v;
        image.data[4 * p + 3] = 255;
      }
      fctx.putImageData(image, 0, 0);
    }
    function show() {
      const ctx = canvas.getContext("2d"), sctx = strip.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      sctx.imageSmoothingEnabled = false;
      sctx.fillStyle = "#fff";
      sctx.fillRect(0, 0, strip.width, strip.height);
      for (let i = 0; i < T; i++) {
        paint(i);
        sctx.drawImage(frame, i * cell + 2, 2, cell - 4, cell - 4);
      }
      sctx.strokeStyle = "#f58518"; sctx.lineWidth = 2;
      sctx.strokeRect(t * cell + 1, 1, cell - 2, cell - 2);
      paint(t);
      ctx.drawImage(frame, 0, 0, canvas.width, canvas.height);
      counter.textContent = `frame ${t + 1} of ${T}`;
    }
    return {
      play(newFrames) {
        frames = newFrames; t = 0;
        clearInterval(timer);
        show();
        timer = setInterval(() => { t = (t + 1) % T; show(); }, frameMs);
      },
      stop() {
        clearInterval(timer); frames = null;
        canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
        strip.getContext("2d").clearRect(0, 0, strip.width, strip.height);
        counter.textContent = "";
      },
    };
  }

  /** The class and motion of the clip as shown: a test clip's class, or a drawing's motion, reversed when played
   *  backwards (C: run.js's clip records). */
  function shownAs(clip, back, C) {
    const reverse = (c) => C.reverseClass ? C.reverseClass[c] : c;  // labels naming no motion stay
    const label = clip.label === undefined ? undefined : back ? reverse(clip.label) : clip.label;
    const motion = clip.motion === undefined ? undefined : C.motions[back ? C.reverseMotion[clip.motion] : clip.motion];
    return { label, motion };
  }

  /** [the right answer, the students' and the teacher's answers both ways round], as HTML sentences. */
  function explain(clip, back, C, names) {
    const K = clip.probs[0].length, who = K > 1 ? `students 1..${K}` : "student 1", shown = shownAs(clip, back, C);
    const truth = clip.source === "test" ? `The right answer: <b>${names[shown.label]}</b>.`
      : `Your digit, <b>${shown.motion}</b>.`;
    const said = clip.probs.map((p) => { const a = argmax(p[K - 1]); return [names[a], pct(p[K - 1][a])]; });
    let text = `Played forwards, ${who} say <b>${said[0][0]}</b> (${said[0][1]}); played backwards, ` +
      `<b>${said[1][0]}</b> (${said[1][1]}). ` + (said[0][0] !== said[1][0]
        ? "They read the frames in order: the direction changes their answer."
        : "Here both ways get the same answer from them.");
    if (clip.teacher) {
      const a = argmax(clip.teacher);
      text += ` The teacher says <b>${names[a]}</b> (${pct(clip.teacher[a])}) both ways round: it averages the ` +
        "frames, and an average has no first or last frame.";
    } else {
      text += " The teacher (not in this page) averages the frames: it answers a clip and its reverse alike.";
    }
    return [truth, text];
  }

  /** The clip controls shown and filled: the motions, the test clips (with a "(your drawing)" entry); the chart
   *  moved beside the clip, the (wider) table below it: one screen at 1280 px. */
  function setUp(C, names, tests) {
    $("clip-section").hidden = false;
    $("motion-row").hidden = false;
    $("prefixes").closest("section").before($("chart").closest("section"));
    $("draw-title").textContent = "Draw a digit: it becomes a clip";
    for (const [i, m] of C.motions.entries()) $("motion").add(new Option(m, i));
    if (!tests || !tests.labels.length) {
      $("test-row").hidden = true;
      return;
    }
    tests.labels.forEach((label, i) => $("test-clip").add(new Option(`${i + 1}: ${names[label]}`, i)));
    $("test-clip").add(new Option("(your drawing)", -1));  // shown while the clip is the drawing's
    $("test-clip").options[tests.labels.length].disabled = true;
  }

  /** Wire the clip controls; `core` is pkd.js's {RUN, predictMany, clearDrawing, show(last), last}. Returns what
   *  pkd.js calls (and window.pkd exposes). */
  function mount(core) {
    const C = core.RUN.clips, names = core.RUN.classNames, T = C.frames, N = T * C.side * C.side;
    const tests = core.RUN.testClips && core.RUN.testClips.labels.length ? core.RUN.testClips : null;
    const player = Player($("player"), $("strip"), $("frame-no"), T, C.side, C.frameMs);
    let clip = null;  // {forwards, backwards, probs: [forwards, backwards], source, index | motion, label, teacher}
    let drawn = null, bytes = null;  // the drawing's 784 pixels; the test clips' frames, decoded once
    setUp(C, names, tests);

    /** Both directions through the model in one call, then shown. */
    async function answer(forwards, extra) {
      const start = performance.now(), backwards = maker.reverseClip(forwards, T), both = new Float32Array(2 * N);
      both.set(forwards); both.set(backwards, N);
      clip = { forwards, backwards, probs: await core.predictMany(both, 2), ...extra };
      render();
      core.last.ms = performance.now() - start;
    }

    function render() {
      if (!clip) return;
      const back = $("backwards").checked, i = back ? 1 : 0, frames = back ? clip.backwards : clip.forwards;
      player.play(frames);
      core.show({ frames: Array.from(frames), probs: clip.probs[i], probsOther: clip.probs[1 - i], backwards: back,
                  source: clip.source, index: clip.index, ...shownAs(clip, back, C) });
      [$("clip-truth").innerHTML, $("both-ways").innerHTML] = explain(clip, back, C, names);
    }

    function showTest(i) {
      if (!bytes) bytes = Uint8Array.from(atob(tests.pixels), (c) => c.charCodeAt(0));
      core.clearDrawing();  // the canvas is for the next drawing
      drawn = null;
      $("test-clip").value = i;
      return answer(Float32Array.from(bytes.subarray(i * N, (i + 1) * N), (v) => v / 255),
                    { source: "test", index: i, label: tests.labels[i], teacher: tests.teacher && tests.teacher[i] });
    }

    function clipFromDrawing(pixels, motion) {
      return maker.makeClip(pixels, motion === undefined ? Number($("motion").value) : motion, C.clipConfig);
    }

    function fromDrawing(pixels) {
      drawn = pixels;
      if (tests) $("test-clip").value = -1;
      const motion = Number($("motion").value);
      return answer(clipFromDrawing(pixels, motion), { source: "drawing", motion });
    }

    $("backwards").addEventListener("change", render);
    $("motion").addEventListener("change", () => { if (drawn) fromDrawing(drawn); });
    if (tests) $("test-clip").addEventListener("change", () => showTest(Number($("test-clip").value)));
    return {
      fromDrawing, clipFromDrawing,
      reverseClip: (frames) => maker.reverseClip(Float32Array.from(frames), T),
      start: () => tests ? showTest(0) : null,
      clear() {
        drawn = null; clip = null;
        player.stop();
        $("clip-truth").textContent = $("both-ways").textContent = "";
      },
    };
  }

  window.pkdClips = { mount, Player };
})();
