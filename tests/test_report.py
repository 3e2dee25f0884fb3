"""`ala-fast report`: the page, its figures and tables, and agreement with `ala-fast evaluate`."""

import json
import re
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ala_fast.cli import main
from ala_fast.readers import concat_tables

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_file(trtllm, tmp_path_factory):
    mask = pc.and_(
        pc.is_in(trtllm.column("hardware"), pa.array(["H100 80GB HBM3", "L40S", "A100-SXM4-80GB"])),
        pc.is_in(trtllm.column("model"), pa.array(["LLaMA v2 7B", "Mistral 7B"])))
    path = tmp_path_factory.mktemp("small", numbered=False) / "small.parquet"
    pq.write_table(concat_tables([trtllm.filter(mask)]), path)
    return path


@pytest.fixture(scope="module")
def report(small_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(small_file), "--out", str(out), "--protocol", "P0",
                 "--protocol", "P3", "--bundle", "default", "--sample", "2",
                 "--methods", "ala_fast,direct_gbr"]) == 0
    return out


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_page_figures_and_tables_exist(report):
    page = (report / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    links = re.findall(r'<a href="([^"]+)"', page)
    assert len(images) == 7  # curves, predicted vs measured, 3 APE breakdowns, reliability, APE
    for name in images + links:
        f = report / name
        assert f.exists() and f.stat().st_size > 0, name
    for name in images:
        w, h = png_size(report / name)
        assert w > 300 and h > 300
    for name in ("curves-small.csv", "reliability-small.csv", "rows-small-p3-leave-one-hardware-out.csv"):
        table = pa.csv.read_csv(report / name)
        assert table.num_rows > 0, name


def test_reliability_table_is_monotone_and_matches_coverage(report):
    rel = pa.csv.read_csv(report / "reliability-small.csv").to_pydict()
    results = json.loads((report / "evaluation.json").read_text())
    for r in results[1:]:  # P0 has no interval
        emp = np.array(rel[r["protocol"]])
        assert np.all(np.diff(emp) >= 0)  # wider intervals never cover less
        i90 = rel["nominal"].index(0.9)
        assert emp[i90] == pytest.approx(r["methods"]["ala_fast"]["coverage"], abs=1e-12)


def test_rows_table_reproduces_the_summary(report):
    from ala_fast.metrics import ape

    rows = pa.csv.read_csv(report / "rows-small-p3-leave-one-hardware-out.csv").to_pydict()
    r = next(r for r in json.loads((report / "evaluation.json").read_text())
             if r["protocol"].startswith("P3"))
    e = ape(np.array(rows["pred_ala_fast"]), np.array(rows["measured"]))
    assert np.median(e) == pytest.approx(r["methods"]["ala_fast"]["median_ape"], rel=1e-9)


def test_report_tables_match_evaluate(report, small_file, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(small_file), "--protocol", "P0", "--protocol", "P3",
                 "--methods", "ala_fast,direct_gbr", "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads((report / "evaluation.json").read_text())
    page = (report / "index.html").read_text()
    r = json.loads(out.read_text())[1]
    assert f"{r['methods']['ala_fast']['median_ape']:.1f}" in page


def test_evaluate_renders_saved_json(report, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- evaluation:start -->\nOLD-CONTENT\n<!-- evaluation:end -->\nrest\n")
    assert main(["evaluate", "--from-json", str(report / "evaluation.json"),
                 "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "OLD-CONTENT" not in text and "| ala_fast" in text and text.endswith("rest\n")
    assert text == readme.read_text()
    assert main(["evaluate", "--from-json", str(report / "index.html")]) == 2
    assert main(["evaluate"]) == 2
    # another section, named by --section; the evaluation section stays as it was
    readme.write_text(text + "<!-- other:start -->\nOLD\n<!-- other:end -->\n")
    assert main(["evaluate", "--from-json", str(report / "evaluation.json"), "--readme",
                 str(readme), "--section", "other"]) == 0
    assert readme.read_text().startswith(text) and "OLD" not in readme.read_text()
    assert main(["evaluate", "--from-json", str(report / "evaluation.json"), "--readme",
                 str(readme), "--section", "missing"]) == 2


def test_evaluate_with_names_hidden_from_the_catalog(small_file, tmp_path):
    """--hide-names runs the protocols on the table with those names replaced (labelled in the
    source); P1 with hidden hardware answers every row, as with the catalog's names."""
    out = tmp_path / "hidden.json"
    assert main(["evaluate", str(small_file), "--protocol", "P1", "--hide-names", "hardware",
                 "--methods", "ala_fast", "--no-uncertainty", "--format", "json",
                 "--out", str(out)]) == 0
    (r,) = json.loads(out.read_text())
    assert r["source"].endswith("(hardware names hidden from the catalog)")
    m = r["methods"]["ala_fast"]
    assert m["answered"] == 1.0 and m["median_ape"] < 15.0


def test_evaluate_leave_one_framework_out_is_asked_for_by_name(small_file, tmp_path):
    """--protocol P3-framework runs P3 by framework; a table of one framework has no fold with
    anything to learn from, so no row is answered (and nothing fails)."""
    out = tmp_path / "fw.json"
    assert main(["evaluate", str(small_file), "--protocol", "P3-framework", "--methods",
                 "ala_fast", "--no-uncertainty", "--format", "json", "--out", str(out)]) == 0
    (r,) = json.loads(out.read_text())
    assert r["protocol"] == "P3 (leave one framework out)" and r["folds"] == 1
    assert r["methods"]["ala_fast"]["answered"] == 0.0
