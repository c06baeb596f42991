/* A drawn digit -> a moving clip: pkd.data.moving_mnist.make_clip (with the run's pkd.preprocess.clip_config), step
 * for step, as the app's Clips page makes a clip of a drawing (pkd.preprocess.clip_from_drawing).
 *
 * The 28x28 digit (the page's prepareCanvas output) is placed on an S x S black canvas, one frame per step:
 * translations ("moving left/right/up/down") at the generator's fastest speed, the digit's box centred across the
 * motion and its range along the motion centred, pasted whole at integer positions; zooms ("growing", "shrinking")
 * about the canvas's centre between the two sizes of clipConfig.zoom (geometric steps), sampled bilinearly with
 * zeros outside the digit as torch's grid_sample(align_corners=False) does. Frames clipped to [0, 1].
 * Tested against the Python path within 1/255 a pixel (tests/browser/test_web_clips.py).
 * Frames: a Float32Array of T * S * S values, frame after frame, row-major.
 */
(function () {
  "use strict";
  const DIGIT = 28;
  const MOTIONS = ["moving left", "moving right", "moving up", "moving down", "growing", "shrinking"];

  /** Box centres [y, x] and sizes (in units of 28 px) per frame: _trajectories with every uniform draw 0.5. */
  function trajectory(motion, cfg) {
    const T = cfg.frames, S = cfg.canvas, speed = cfg.speed, room = S - DIGIT, span = speed * (T - 1);
    const centre = [], scale = [];
    if (motion >= 4) {  // zooms: a fixed centre where the largest box fits, sizes small -> large (or back)
      const [small, large] = cfg.zoom, half = large * DIGIT / 2 + 1, c = half + 0.5 * (S - 2 * half);
      for (let t = 0; t < T; t++) {
        const step = motion === 4 ? t : T - 1 - t;
        centre.push([c, c]);
        scale.push(small * (large / small) ** (step / (T - 1)));
      }
      return { centre, scale };
    }
    const lo = Math.floor(0.5 * (room - span + 1)), across = Math.floor(0.5 * (room + 1));
    const forwards = motion === 1 || motion === 3, vertical = motion === 2 || motion === 3;
    for (let t = 0; t < T; t++) {
      const along = forwards ? lo + speed * t : lo + span - speed * t;
      centre.push(vertical ? [along + DIGIT / 2, across + DIGIT / 2] : [across + DIGIT / 2, along + DIGIT / 2]);
      scale.push(1);
    }
    return { centre, scale };
  }

  /** The digit (784 values) bilinearly sampled at digit coords (gy, gx) in [-1, 1] (pixel centres), 0 outside. */
  function sample(digit, gy, gx) {
    const iy = ((gy + 1) * DIGIT - 1) / 2, ix = ((gx + 1) * DIGIT - 1) / 2;
    const y0 = Math.floor(iy), x0 = Math.floor(ix), ty = iy - y0, tx = ix - x0;
    let v = 0;
    for (const [y, wy] of [[y0, 1 - ty], [y0 + 1, ty]]) {
      if (y < 0 || y >= DIGIT) continue;
      for (const [x, wx] of [[x0, 1 - tx], [x0 + 1, tx]]) {
        if (x >= 0 && x < DIGIT) v += wy * wx * digit[y * DIGIT + x];
      }
    }
    return Math.min(Math.max(v, 0), 1);
  }

  /** One frame (S * S values, written into `out` at `offset`): the digit at `centre` with size `scale`. */
  function renderFrame(digit, centre, scale, S, out, offset) {
    const top = centre[0] - DIGIT / 2, left = centre[1] - DIGIT / 2;
    if (scale === 1 && Number.isInteger(top) && Number.isInteger(left)) {  // pasted exactly, as _render does
      for (let y = 0; y < DIGIT; y++) {
        for (let x = 0; x < DIGIT; x++) out[offset + (top + y) * S + left + x] = digit[y * DIGIT + x];
      }
      return;
    }
    // float32, as torch computes the grid: digit coord = (canvas px + 0.5 - centre) / (14 * scale)
    const f = Math.fround, cy = f(centre[0]), cx = f(centre[1]), unit = f(DIGIT / 2 * f(scale));
    for (let y = 0; y < S; y++) {
      const gy = f(f(y + 0.5 - cy) / unit);
      for (let x = 0; x < S; x++) out[offset + y * S + x] = sample(digit, gy, f(f(x + 0.5 - cx) / unit));
    }
  }

  /**
   * A clip of one digit moving as asked: the app's clip of a drawing.
   * digit: 784 numbers in [0, 1] (28x28, the model's input as prepareCanvas makes it); motion: a name of MOTIONS
   * or its index; cfg: {frames: T, canvas: S, speed: px per frame, zoom: [small, large]} (the run's clipConfig).
   * Returns a Float32Array(T * S * S).
   */
  function makeClip(digit, motion, cfg) {
    const m = typeof motion === "number" ? motion : MOTIONS.indexOf(motion);
    if (!(m >= 0 && m < MOTIONS.length)) {
      throw new Error(`unknown motion ${motion}; choose one of: ${MOTIONS.join(", ")}`);
    }
    if (digit.length !== DIGIT * DIGIT) throw new Error(`a digit is 784 values (28x28), got ${digit.length}`);
    const clamped = Float64Array.from(digit, (v) => Math.min(Math.max(v, 0), 1));
    const { centre, scale } = trajectory(m, cfg), S = cfg.canvas;
    const out = new Float32Array(cfg.frames * S * S);
    for (let t = 0; t < cfg.frames; t++) renderFrame(clamped, centre[t], scale[t], S, out, t * S * S);
    return out;
  }

  /** The frames in reverse order (the clip played backwards): a new array of the same length. */
  function reverseClip(frames, T) {
    const n = frames.length / T, out = new Float32Array(frames.length);
    for (let t = 0; t < T; t++) out.set(frames.subarray((T - 1 - t) * n, (T - t) * n), t * n);
    return out;
  }

  window.pkdClipMaker = { makeClip, reverseClip, MOTIONS };
})();
