/* A drawing -> the 28x28 image the students read: pkd.preprocess.images.prepare_canvas, step for step.
 *
 * White ink on black, RGBA composited over black, luma as PIL "L" (ITU-R 601). Pixels brighter than 0.1 are ink
 * (fainter ones cleared); the ink's bounding box is cropped, scaled (antialiased bilinear, as torch's
 * F.interpolate(..., antialias=True, align_corners=False)) so its longer side is 20 px, and pasted into a 28x28
 * field with its centre of mass on pixel (14, 14), kept inside the field. Tested against the Python path within
 * 1/255 a pixel (tests/test_web_export.py). Everything is in doubles; the result is a Float32Array(784), row-major.
 */
(function () {
  "use strict";
  const SIDE = 28, BOX = 20, CENTRE = 14;
  const INK = 0.1;  // brightness above which a pixel is ink
  const MAX_INK_FRACTION = 0.5;  // more ink than this is not a digit on a black background
  const MIN_INK_EXTENT = 0.1;  // ink spanning less than this share of the canvas's side is a dot

  /** RGBA bytes (w*h*4) -> brightness in [0, 1] (w*h), composited over black. */
  function gray(rgba, w, h) {
    const out = new Float64Array(w * h);
    for (let i = 0; i < w * h; i++) {
      const r = rgba[4 * i] / 255, g = rgba[4 * i + 1] / 255, b = rgba[4 * i + 2] / 255, a = rgba[4 * i + 3] / 255;
      out[i] = (r * 0.299 + g * 0.587 + b * 0.114) * a;
    }
    return out;
  }

  /** Python's round(): halves to the even neighbour. */
  function roundHalfEven(x) {
    const f = Math.floor(x), d = x - f;
    if (d !== 0.5) return d < 0.5 ? f : f + 1;
    return f % 2 === 0 ? f : f + 1;
  }

  /** torch's antialiased bilinear weights along one axis: for each output index, [first input index, weights]. */
  function weights(inSize, outSize) {
    const scale = inSize / outSize;
    const support = scale >= 1 ? scale : 1.0;
    const invscale = scale >= 1 ? 1 / scale : 1.0;
    const out = [];
    for (let i = 0; i < outSize; i++) {
      const centre = scale * (i + 0.5);
      const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
      const xsize = Math.min(Math.trunc(centre + support + 0.5), inSize) - xmin;
      const w = new Float64Array(Math.max(xsize, 0));
      let total = 0;
      for (let j = 0; j < w.length; j++) {
        const x = Math.abs((j + xmin - centre + 0.5) * invscale);
        w[j] = x < 1 ? 1 - x : 0;
        total += w[j];
      }
      if (total !== 0) for (let j = 0; j < w.length; j++) w[j] /= total;
      out.push([xmin, w]);
    }
    return out;
  }

  /** (h, w) doubles -> (oh, ow): rows first, then columns (separable), clamped to [0, 1]. */
  function resize(src, h, w, oh, ow) {
    const across = weights(w, ow), down = weights(h, oh);
    const mid = new Float64Array(h * ow);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < ow; x++) {
        const [x0, wx] = across[x];
        let s = 0;
        for (let j = 0; j < wx.length; j++) s += wx[j] * src[y * w + x0 + j];
        mid[y * ow + x] = s;
      }
    }
    const out = new Float64Array(oh * ow);
    for (let y = 0; y < oh; y++) {
      const [y0, wy] = down[y];
      for (let x = 0; x < ow; x++) {
        let s = 0;
        for (let j = 0; j < wy.length; j++) s += wy[j] * mid[(y0 + j) * ow + x];
        out[y * ow + x] = Math.min(Math.max(s, 0), 1);
      }
    }
    return out;
  }

  /**
   * A canvas's RGBA pixels -> Float32Array(784) in [0, 1], or null for a blank canvas.
   * Throws an Error whose message tells the user what to do (too much ink, or only a dot).
   */
  function prepareCanvas(rgba, w, h) {
    const g = gray(rgba, w, h);
    let top = h, bottom = -1, left = w, right = -1, inked = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (g[y * w + x] > INK) {
          inked++;
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
      }
    }
    if (inked === 0) return null;
    if (inked / (w * h) > MAX_INK_FRACTION) {
      throw new Error(`${Math.round(100 * inked / (w * h))}% of the canvas is ink, so it is not a digit: ` +
                      "draw white strokes on the black canvas");
    }
    const ch = bottom - top + 1, cw = right - left + 1;
    if (Math.max(ch, cw) / Math.min(w, h) < MIN_INK_EXTENT) {
      throw new Error("Too little ink: a dot or a speck is not a digit. Draw the whole digit, larger.");
    }
    const crop = new Float64Array(ch * cw);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const v = g[(top + y) * w + left + x];
        crop[y * cw + x] = v > INK ? v : 0;
      }
    }
    const scale = BOX / Math.max(ch, cw);
    const sh = Math.max(1, roundHalfEven(ch * scale)), sw = Math.max(1, roundHalfEven(cw * scale));
    const digit = resize(crop, ch, cw, sh, sw);
    let total = 0, my = 0, mx = 0;
    for (let y = 0; y < sh; y++) {
      let row = 0;
      for (let x = 0; x < sw; x++) row += digit[y * sw + x];
      my += row * y;
      total += row;
    }
    for (let x = 0; x < sw; x++) {
      let col = 0;
      for (let y = 0; y < sh; y++) col += digit[y * sw + x];
      mx += col * x;
    }
    if (total <= 0) return null;
    const y0 = Math.min(Math.max(Math.floor(CENTRE - my / total + 0.5), 0), SIDE - sh);
    const x0 = Math.min(Math.max(Math.floor(CENTRE - mx / total + 0.5), 0), SIDE - sw);
    const out = new Float32Array(SIDE * SIDE);
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < sw; x++) out[(y0 + y) * SIDE + x0 + x] = digit[y * sw + x];
    }
    return out;
  }

  window.pkdPreprocess = { prepareCanvas: prepareCanvas, SIDE: SIDE };
})();
