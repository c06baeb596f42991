/* The page: the students in onnxruntime-web, the canvas, the per-prefix table, early exit, and window.pkd. Two
 * modes, from run.js's "mode": "digit" (draw a digit, test digits) and "clip" (a video run: clips.js mounts the clip
 * player, test clips and clips made from the drawing, played forwards and backwards).
 *
 * window.pkd (documented in docs/web.md):
 *   pkd.ready                  Promise, resolved once the model is loaded (rejected with the reason otherwise)
 *   pkd.predict(pixels)        pixels: 784 numbers in [0, 1] (28x28, row-major, white digit on black, the model's
 *                              input as pkd.preprocess makes it) -> Promise of k arrays of C probabilities,
 *                              [prefix 1..k][class]
 *   pkd.predictMany(pixels, n) n inputs back to back (n * 784, or n * T*S*S for clips) -> [input][prefix][class]
 *   pkd.prepareCanvas(rgba, w, h)  a drawing's RGBA bytes -> Float32Array(784) or null (blank); throws on bad ink
 *   pkd.canvasRGBA()           the drawing canvas's RGBA bytes (280x280x4), as an Array
 *   pkd.timings                ms from navigation start: scripts run, runtime and model decoded, session ready
 *   pkd.run                    the run's records: classes, per-prefix FLOPs and accuracies, teacher, early exit
 *   pkd.last                   the last drawing's {pixels, probs, ms}: the model input, [prefix][class], and the
 *                              milliseconds from the stroke's end to the table drawn; a test digit's also has label
 * Clip mode also (the run's clips: T frames of S x S, RUN.sampleShape = [T, 1, S, S]):
 *   pkd.predictClip(frames)    frames: T x S x S numbers in [0, 1] (nested arrays or flat, frame after frame)
 *                              -> Promise of [prefix][class]
 *   pkd.clipFromDrawing(pixels, motion)  784 numbers (prepareCanvas's output) and a motion ("moving left", ... or
 *                              its index) -> Float32Array(T * S * S): the clip the app's Clips page makes of it
 *   pkd.reverseClip(frames)    the frames in reverse order (flat)
 *   pkd.last                   {frames, probs, probsOther, backwards, source ("test" | "drawing"), label | motion,
 *                              ms}: the clip shown (flat), every prefix's answer to it and to it played the other
 *                              way round, and ms from the clip's choice to the table drawn
 */
(function () {
  "use strict";
  const RUN = window.PKD_RUN;
  const SIDE = 28;
  const K = RUN.prefixRows.length, C = RUN.classNames.length;
  const SHAPE = RUN.sampleShape || [1, SIDE, SIDE], VALUES = SHAPE.reduce((a, b) => a * b, 1);  // per input
  const CLIP = RUN.mode === "clip", UNIT = CLIP ? "clip" : "digit";
  const $ = (id) => document.getElementById(id);

  /** base64 text -> its bytes (natively where the browser can: 40 ms for the runtime, atob 130 ms, a data: URL
   *  fetch 750 ms), gunzipped with the browser's DecompressionStream when asked. */
  async function decode(text, gzipped) {
    let bytes;
    if (typeof Uint8Array.fromBase64 === "function") {
      bytes = Uint8Array.fromBase64(text);
    } else {
      const raw = atob(text);
      bytes = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    }
    if (!gzipped) return bytes;
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // milliseconds from navigation start: scripts run, runtime and model decoded, session ready (docs/web.md)
  const timings = { scripts: performance.now() };

  /** onnxruntime-web from the bundled files, single-threaded (works from file:// and any static host). */
  async function loadSession() {
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    const [wasm, model] = await Promise.all([decode(window.PKD_ORT_WASM_GZ, true), decode(window.PKD_MODEL, false)]);
    timings.decoded = performance.now();
    ort.env.wasm.wasmBinary = wasm;
    const glue = new Blob([window.PKD_ORT_GLUE], { type: "text/javascript" });
    ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(glue) };
    // an .ort model, optimised when exported (onnxruntime, same version): no optimisation pass at load time; no
    // weight pre-packing either (sessions made in about half the time, each answer ~3 ms slower: docs/web.md)
    const made = await ort.InferenceSession.create(model, { executionProviders: ["wasm"],
      graphOptimizationLevel: "disabled", extra: { session: { disable_prepacking: "1" } } });
    timings.session = performance.now();
    return made;
  }

  let session = null;
  const ready = loadSession().then((s) => { session = s; });

  async function predictMany(pixels, n) {
    await ready;
    if (pixels.length !== n * VALUES) throw new Error(`expected ${n} x ${VALUES} pixels, got ${pixels.length}`);
    const input = new ort.Tensor("float32", Float32Array.from(pixels), [n, ...SHAPE]);
    const result = await session.run({ pixels: input }, ["prefix_probs"]);
    const data = result.prefix_probs.data;  // (n, K, C)
    const out = [];
    for (let i = 0; i < n; i++) {
      const prefixes = [];
      for (let k = 0; k < K; k++) prefixes.push(Array.from(data.subarray((i * K + k) * C, (i * K + k + 1) * C)));
      out.push(prefixes);
    }
    return out;
  }

  async function predict(pixels) {
    return (await predictMany(pixels, 1))[0];
  }

  /** A clip (T x S x S, nested or flat) -> every prefix's probabilities. */
  async function predictClip(frames) {
    const flat = Array.isArray(frames) ? frames.flat(Infinity) : frames;
    if (flat.length !== VALUES) {
      throw new Error(`a clip of this run is ${SHAPE[0]} frames of ${SHAPE[2]}x${SHAPE[3]} (${VALUES} values), ` +
                      `got ${flat.length}`);
    }
    return predict(flat);
  }

  // ------------------------------------------------------------------------------------------ the table

  const fmtFlops = (f) => f >= 1e6 ? `${(f / 1e6).toFixed(2)} M` : `${Math.round(f / 1e3)} k`;
  const pct = (x, digits) => x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`;
  const argmax = (p) => p.reduce((best, v, i) => v > p[best] ? i : best, 0);

  function buildTable() {
    const body = $("prefixes").tBodies[0];
    if (CLIP) {  // a column for the clip played the other way round, after the confidence
      const th = document.createElement("th");
      th.textContent = "played the other way";
      $("prefixes").tHead.rows[0].cells[2].after(th);
    }
    RUN.prefixRows.forEach((row, i) => {
      const tr = body.insertRow();
      tr.innerHTML = `<td>1..${i + 1}</td><td class="answer">·</td><td class="conf">–</td>` +
        (CLIP ? `<td class="other">·</td>` : "") +
        `<td>${fmtFlops(row.flops)}</td><td>${pct(row.share, 2)}</td><td>${pct(row.accuracy, 2)}</td>`;
    });
    const select = $("confidence");
    RUN.exitLevels.forEach((c) => {
      const opt = document.createElement("option");
      opt.value = c; opt.textContent = `${+(100 * c).toFixed(1)}%`;
      select.appendChild(opt);
    });
    select.value = RUN.exitLevels.includes(0.9) ? 0.9 : RUN.exitLevels[0];
    select.addEventListener("change", showAnswers);
  }

  /** The first prefix whose top probability reaches the threshold (the whole ensemble if none does). */
  function earlyExit(probs, threshold) {
    for (let k = 0; k < probs.length; k++) if (Math.max(...probs[k]) >= threshold) return k;
    return probs.length - 1;
  }

  function showAnswers() {
    const threshold = Number($("confidence").value);
    const rows = $("prefixes").tBodies[0].rows;
    const probs = last ? last.probs : null;
    const exitK = probs ? earlyExit(probs, threshold) : -1;
    for (let k = 0; k < K; k++) {
      const cells = rows[k].cells;
      rows[k].classList.toggle("exit", k === exitK);
      if (!probs) {
        cells[1].textContent = "·"; cells[2].textContent = "–";
        if (CLIP) cells[3].textContent = "·";
        continue;
      }
      const top = argmax(probs[k]), conf = probs[k][top];
      cells[1].textContent = RUN.classNames[top];
      cells[2].innerHTML = `<span class="bar" style="width:${Math.round(60 * conf)}px"></span> ${pct(conf, 1)}`;
      if (CLIP) {  // the same prefix on the clip played the other way round
        const other = argmax(last.probsOther[k]);
        cells[3].textContent = `${RUN.classNames[other]} (${pct(last.probsOther[k][other], 0)})`;
        cells[3].classList.toggle("differs", other !== top);
      }
    }
    const row = RUN.prefixRows[Math.max(exitK, 0)], level = `${+(100 * threshold).toFixed(1)}%`;
    const sure = probs && Math.max(...probs[exitK]) >= threshold;
    const cost = `${fmtFlops(row.flops)}FLOPs (${pct(row.share, 2)} of the teacher's ${fmtFlops(RUN.teacherFlops)}FLOPs)`;
    $("early").innerHTML = !probs ? (CLIP ? "Choose a test clip, or draw a digit: it becomes a clip, and every prefix "
                                          + "answers it." : "Draw a digit: every prefix answers as you draw.")
      : sure ? `Early exit at ${level}: <b>${RUN.classNames[argmax(probs[exitK])]}</b> after ` +
               `student${exitK ? "s 1.." : " "}${exitK + 1}, ${cost}`
      : `No prefix is ${level} sure: all ${K} students answer <b>${RUN.classNames[argmax(probs[exitK])]}</b>, ${cost}`;
    window.pkdChart.draw($("chart"), RUN, threshold, exitK);
  }

  // ------------------------------------------------------------------------------------------ the canvas

  let last = null, clipPage = null;  // clipPage: clips.js's controls, in clip mode
  const canvas = $("draw"), ctx = canvas.getContext("2d", { willReadFrequently: true });
  function clearDrawing() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    $("seen").getContext("2d").clearRect(0, 0, SIDE, SIDE);
    $("message").textContent = "";
    $("message").style.color = "";
  }
  function clearCanvas() {
    clearDrawing();
    last = null;
    showingTest = false;
    if (clipPage) clipPage.clear();
    showAnswers();
  }

  function canvasRGBA() {
    return ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  }

  function showSeen(pixels) {
    const seen = $("seen").getContext("2d"), image = seen.createImageData(SIDE, SIDE);
    for (let i = 0; i < SIDE * SIDE; i++) {
      const v = Math.round(255 * pixels[i]);
      image.data.set([v, v, v, 255], 4 * i);
    }
    seen.putImageData(image, 0, 0);
  }

  let busy = false, again = false;
  /** Answer the drawing as it is now; one answer at a time, the latest drawing next. */
  async function answer() {
    if (busy) { again = true; return; }
    busy = true;
    const start = performance.now();
    try {
      const pixels = window.pkdPreprocess.prepareCanvas(canvasRGBA(), canvas.width, canvas.height);
      $("message").textContent = "";
      if (pixels && clipPage) {
        showSeen(pixels);
        await clipPage.fromDrawing(pixels);  // the clip of the drawing, both ways round: clips.js
        last.ms = performance.now() - start;  // from the stroke's end, as a digit's
      } else if (pixels) {
        showSeen(pixels);
        last = { pixels: Array.from(pixels), probs: await predict(pixels) };
        showAnswers();
        last.ms = performance.now() - start;
      }
    } catch (err) {
      $("message").textContent = err.message;
    } finally {
      busy = false;
      if (again) { again = false; answer(); }
    }
  }

  // "A test digit": the run's test images (run.js), shown as the students see them, with their true label
  const tests = RUN.testDigits;
  let testIndex = -1, showingTest = false;
  async function showTestDigit() {
    const bytes = Uint8Array.from(atob(tests.pixels), (c) => c.charCodeAt(0));
    testIndex = (testIndex + 1) % tests.labels.length;
    const pixels = Float32Array.from(bytes.subarray(testIndex * SIDE * SIDE, (testIndex + 1) * SIDE * SIDE),
                                     (v) => v / 255);
    showSeen(pixels);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage($("seen"), 0, 0, canvas.width, canvas.height);
    showingTest = true;
    const start = performance.now();
    last = { pixels: Array.from(pixels), probs: await predict(pixels), label: tests.labels[testIndex] };
    $("message").textContent = `A test digit: its true label is ${RUN.classNames[last.label]}.`;
    $("message").style.color = "#1d2330";
    showAnswers();
    last.ms = performance.now() - start;
  }
  if (tests && tests.labels.length) {
    $("test-digit").hidden = false;
    $("test-digit").addEventListener("click", showTestDigit);
  }

  let drawing = false, px = 0, py = 0;
  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  }
  canvas.addEventListener("pointerdown", (event) => {
    if (showingTest) clearCanvas();  // drawing after a test digit starts a new drawing
    drawing = true;
    [px, py] = point(event);
    canvas.setPointerCapture(event.pointerId);
    ctx.beginPath(); ctx.arc(px, py, 10, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(x, y); ctx.stroke();
    [px, py] = [x, y];
  });
  const endStroke = () => { if (drawing) { drawing = false; answer(); } };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  $("clear").addEventListener("click", clearCanvas);

  // ------------------------------------------------------------------------------------------ start

  buildTable();
  if (CLIP) {
    clipPage = window.pkdClips.mount({ RUN, predictMany, clearDrawing, show(value) { last = value; showAnswers(); },
                                       get last() { return last; } });
  }
  clearCanvas();
  $("about").innerHTML = `Run <code>${RUN.runName}</code> (${RUN.datasetName}, ${RUN.ensembleMode} ensemble of ${K} ` +
    `students), exported by pkd ${RUN.pkdVersion}. The students run in this browser with onnxruntime-web ` +
    `${RUN.runtimeVersion} (WebAssembly, one thread); nothing you draw leaves this page. For other pages: ` +
    (CLIP ? `<code>await window.pkd.predictClip(frames)</code> (${SHAPE[0]} frames of ${SHAPE[2]}x${SHAPE[3]})`
      : `<code>await window.pkd.predict(pixels28x28)</code>`) + " gives every prefix's probabilities.";
  ready.then(() => {
    $("subtitle").textContent = `${K} students distilled from a teacher of ${fmtFlops(RUN.teacherFlops)}FLOPs ` +
      (CLIP && RUN.teacherDigitAcc != null
        ? `(test accuracy ${pct(RUN.teacherAcc, 2)} on digit and motion, ${pct(RUN.teacherDigitAcc, 2)} on the digit `
          + "alone: it averages the frames, so it cannot tell which way a digit moves). "
        : `(test accuracy ${pct(RUN.teacherAcc, 2)}). `) +
      (CLIP ? "The students read the frames in order. Choose a test clip or draw a digit: each row adds one student."
      : "Draw a digit: each row adds one student.");
    if (clipPage) clipPage.start();
  }, (err) => {
    $("subtitle").textContent = `The students could not be loaded in this browser: ${err.message || err}`;
  });

  window.pkd = { ready, predict, predictMany, prepareCanvas: window.pkdPreprocess.prepareCanvas,
                 canvasRGBA: () => Array.from(canvasRGBA()), run: RUN, timings,
                 get last() { return last; } };
  if (clipPage) {
    Object.assign(window.pkd, { predictClip, clipFromDrawing: clipPage.clipFromDrawing,
                                reverseClip: clipPage.reverseClip });
  }
})();
