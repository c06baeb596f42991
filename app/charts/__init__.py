"""The app's charts and tables, one module per page (results, playground, clips, train, runs, sweeps) plus format.py
(what they share: colours, numbers in words, column formats, FLOPs axis ticks).

Pure functions of run data (as `pkd.runs` and `pkd.sweep` read it) -> plotly figures and pandas tables: nothing here
imports Streamlit or touches files, so all of it is unit-tested on plain data. Import the modules themselves
(`from app.charts import results`); this file re-exports nothing.
"""
