"""Web pages of runs: `pkd export RUN --web` (pkd.web.build) with onnxruntime-web (pkd.web.runtime) and the page's
own files (pkd/web/page/: index.html, the preprocessing, the chart and the page's script)."""
