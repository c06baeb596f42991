"""The lesson tools' pure helpers: URL state <-> session state, run ids, the How-it-works picture, the glossary."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from app import diagram, glossary, url_state
from app.url_state import Field

IDS = {"mnist": "/p/mnist", "sweep-quick/trial-002": "/p/sweep-quick/trial-002", "runs:mnist": "/r/mnist"}
FIELDS = [Field("run", "run", "id"), Field("lesson", "lesson", "bool", False),
          Field("k", "pg_k", "int", low=1, high=64),
          Field("digit", "pg_test_idx", "int", low=0, high=10**7, when=("pg_source", "test")),
          Field("conf", "pg_conf", "float", 0.9, low=0.5, high=0.999),
          Field("axis", "axis", "choice", "log", ("log", "linear")), Field("compare", "compare", "ids", [])]


def test_read_takes_valid_values_and_the_dependent_key():
    state = url_state.read({"run": "sweep-quick/trial-002", "lesson": "1", "k": "2", "digit": "17",
                            "conf": "0.95", "axis": "linear", "compare": "mnist,runs:mnist"}, FIELDS, IDS)
    assert state == {"run": "/p/sweep-quick/trial-002", "lesson": True, "pg_k": 2, "pg_test_idx": 17,
                     "pg_source": "test", "pg_conf": 0.95, "axis": "linear", "compare": ["/p/mnist", "/r/mnist"]}


@pytest.mark.parametrize("name,value", [
    ("run", "nope"), ("run", "../../etc"), ("lesson", "maybe"), ("k", "abc"), ("k", "0"), ("k", "1e9"),
    ("digit", "-5"), ("conf", "nan"), ("conf", "5"), ("axis", "sideways"), ("compare", "mnist,nope"),
    ("k", "9" * 400), ("k", ""),
])
def test_read_drops_bad_values_so_the_page_keeps_its_default(name, value):
    assert url_state.read({name: value}, FIELDS, IDS) == {}


def test_read_takes_the_last_of_repeated_values_and_ignores_unknown_names():
    assert url_state.read({"k": ["1", "3"], "zzz": "1"}, FIELDS, IDS) == {"pg_k": 3}


def test_write_omits_defaults_and_inactive_fields_and_round_trips():
    state = {"run": "/r/mnist", "lesson": True, "pg_k": 3, "pg_test_idx": 5, "pg_source": "test", "pg_conf": 0.9,
             "axis": "log", "compare": ["/p/mnist", "/gone"]}
    params = url_state.write(state, FIELDS, IDS)
    assert params == {"run": "runs:mnist", "lesson": "1", "k": "3", "digit": "5", "compare": "mnist"}
    assert url_state.read(params, FIELDS, IDS) == {"run": "/r/mnist", "lesson": True, "pg_k": 3, "pg_test_idx": 5,
                                                   "pg_source": "test", "compare": ["/p/mnist"]}
    drawn = url_state.write(dict(state, pg_source="canvas"), FIELDS, IDS)
    assert "digit" not in drawn  # a drawing is not in the link, so neither is a stale digit index
    assert url_state.write({"run": "/unknown"}, FIELDS, IDS) == {}


def test_run_ids_are_short_and_unique_across_roots():
    ids = url_state.run_ids([("pretrained", [("mnist", "/p/mnist"), ("sweep-quick", "/p/sweep-quick")]),
                             ("runs", [("mnist", "/r/mnist"), ("mine", "/r/mine")])])
    assert ids == {"mnist": "/p/mnist", "sweep-quick": "/p/sweep-quick", "runs:mnist": "/r/mnist", "mine": "/r/mine"}


def test_every_page_field_has_a_unique_name_and_key():
    for page, fields in url_state.PAGE_FIELDS.items():
        names = [f.name for f in url_state.GLOBAL_FIELDS + fields]
        assert len(names) == len(set(names)), page


@pytest.mark.parametrize("k", [1, 3, 7])
def test_ensemble_svg_draws_every_student_and_its_scale(k):
    students = [{"flops": f"{j} million", "scale": None if j == 0 else 0.5} for j in range(k)]
    svg = diagram.ensemble_svg(students)
    ET.fromstring(svg)  # well-formed: renders offline as inline SVG
    assert svg.count("bold\">student ") == k and svg.count("× s_") == k - 1 and f"E_{k}" in svg
    assert "× s_2 = 0.50" in svg if k > 1 else "× s_" not in svg
    assert f"students 1–{k}" in svg if k > 1 else "student 1" in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from a network
    independent = diagram.ensemble_svg(students, residual=False)
    assert "× s_" not in independent


def test_glossary_explains_every_word_the_brief_names():
    for term in ("FLOP", "epoch", "α (alpha)", "temperature T", "width (d_model)", "kernel", "CUDA", "logits",
                 "scale s_k", "early exit"):
        assert len(glossary.TERMS[term]) > 40, term
    assert all(text.strip() for text in glossary.HELP.values())
    assert not re.search(r"\d\s?k\b", " ".join(glossary.TERMS.values()))  # no '188 k' style thousands
