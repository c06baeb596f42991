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

  /** Wire the clip controls; `core` is pkd.js's {RUN, predictMany, show(last)}. Returns what pkd.js calls. */
  function mount(core) {
    const RUN = core.RUN, C = RUN.clips, names = RUN.classNames;
    const T = C.frames, S = C.side, N = T * S * S;
    const tests = RUN.testClips;
    const player = Player($("player"), $("strip"), $("frame-no"), T, S, C.frameMs);
    let clip = null;  // {forwards, backwards: frames, probs: [forwards, backwards], source, label?, teacher?, motion?}

    $("clip-section").hidden = false;
    const chart = $("chart").closest("section"), table = $("prefixes").closest("section");
    table.before(chart);  // the chart beside the clip, the (wider) table below: one screen at 1280 px
    $("motion-row").hidden = false;
    $("draw-title").textContent = "Draw a digit: it becomes a clip";
    for (const [i, m] of C.motions.entries()) $("motion").add(new Option(m, i));
    if (tests && tests.labels.length) {
      tests.labels.forEach((label, i) => $("test-clip").add(new Option(`${i + 1}: ${names[label]}`, i)));
      $("test-clip").add(new Option("(your drawing)", -1));  // shown while the clip is the drawing's
      $("test-clip").options[tests.labels.length].disabled = true;
      $("test-clip").addEventListener("change", () => showTest(Number($("test-clip").value)));
    } else {
      $("test-row").hidden = true;
    }
    $("backwards").addEventListener("change", render);

    function reversedClass(c) { return C.reverseClass ? C.reverseClass[c] : c; }

    /** Both directions through the model (one call), then shown. */
    async function answer(forwards, extra) {
      const start = performance.now();
      const backwards = maker.reverseClip(forwards, T);
      const both = new Float32Array(2 * N);
      both.set(forwards); both.set(backwards, N);
      const probs = await core.predictMany(both, 2);
      clip = { forwards, backwards, probs, ...extra };
      render();
      core.last.ms = performance.now() - start;
    }

    function render() {
      if (!clip) return;
      const back = $("backwards").checked, i = back ? 1 : 0;
      player.play(back ? clip.backwards : clip.forwards);
      core.show({ frames: Array.from(back ? clip.backwards : clip.forwards), probs: clip.probs[i],
                  probsOther: clip.probs[1 - i], backwards: back, source: clip.source, index: clip.index,
                  label: clip.label === undefined ? undefined : back ? reversedClass(clip.label) : clip.label,
                  motion: clip.motion === undefined ? undefined : back ? C.motions[reverseMotion(clip.motion)] :
                    C.motions[clip.motion] });
      explain(back);
    }

    function reverseMotion(m) { return C.reverseMotion[m]; }  // left <-> right, up <-> down, growing <-> shrinking

    /** The right answer, and the students' and the teacher's answers both ways round, in words. */
    function explain(back) {
      const K = clip.probs[0].length, who = K > 1 ? `students 1..${K}` : "student 1";
      const said = clip.probs.map((p) => { const a = argmax(p[K - 1]); return [names[a], pct(p[K - 1][a])]; });
      const truth = clip.source === "test" ? `The right answer: <b>${names[back ? reversedClass(clip.label) : clip.label]}</b>.`
        : `Your digit, <b>${C.motions[back ? reverseMotion(clip.motion) : clip.motion]}</b>.`;
      $("clip-truth").innerHTML = truth;
      const differ = said[0][0] !== said[1][0];
      let text = `Played forwards, ${who} say <b>${said[0][0]}</b> (${said[0][1]}); played backwards, ` +
        `<b>${said[1][0]}</b> (${said[1][1]}). ` + (differ ? "They read the frames in order: the direction changes " +
        "their answer." : "Here both ways get the same answer from them.");
      if (clip.teacher) {
        const a = argmax(clip.teacher);
        text += ` The teacher says <b>${names[a]}</b> (${pct(clip.teacher[a])}) both ways round: it averages the ` +
          "frames, and an average has no first or last frame.";
      } else {
        text += " The teacher (not in this page) averages the frames: it answers a clip and its reverse alike.";
      }
      $("both-ways").innerHTML = text;
    }

    function showTest(i) {
      const frames = Float32Array.from(testBytes().subarray(i * N, (i + 1) * N), (v) => v / 255);
      core.clearDrawing();  // the canvas is for the next drawing
      drawn = null;
      $("test-clip").value = i;
      return answer(frames, { source: "test", index: i, label: tests.labels[i],
                              teacher: tests.teacher ? tests.teacher[i] : null });
    }
    let bytes = null;
    function testBytes() {
      if (!bytes) bytes = Uint8Array.from(atob(tests.pixels), (c) => c.charCodeAt(0));
      return bytes;
    }

    function clipFromDrawing(pixels, motion) {
      return maker.makeClip(pixels, motion === undefined ? Number($("motion").value) : motion, C.clipConfig);
    }
    let drawn = null;
    $("motion").addEventListener("change", () => { if (drawn) fromDrawing(drawn); });
    function fromDrawing(pixels) {
      drawn = pixels;
      if (tests && tests.labels.length) $("test-clip").value = -1;
      const motion = Number($("motion").value);
      return answer(clipFromDrawing(pixels, motion), { source: "drawing", motion });
    }

    return {
      fromDrawing,
      clear() { drawn = null; clip = null; player.stop(); $("clip-truth").textContent = ""; $("both-ways").textContent = ""; },
      start() { if (tests && tests.labels.length) return showTest(0); return null; },
      clipFromDrawing,
      reverseClip: (frames) => maker.reverseClip(Float32Array.from(frames), T),
      frameValues: N,
    };
  }

  window.pkdClips = { mount, Player };
})();
