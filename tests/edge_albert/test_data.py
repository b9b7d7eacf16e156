import json

import pytest

from edge_albert.data import read_dataset, summarize
from edge_albert.errors import DataError


def test_glue_layouts_are_detected(shared_data):
    sst = read_dataset(shared_data / "sst2" / "dev.tsv")
    assert (len(sst), sst.is_pair, sst.label_names()) == (872, False, ["0", "1"])
    mrpc = read_dataset(shared_data / "mrpc" / "dev.tsv")
    assert (len(mrpc), mrpc.is_pair, mrpc.label_column) == (1500, True, "Quality")
    assert mrpc.text_columns == ("#1 String", "#2 String")
    assert any('"' in t for t in mrpc.texts + mrpc.pairs)  # QUOTE_NONE keeps bare quotes
    ag = read_dataset(shared_data / "agnews" / "dev.tsv")
    assert ag.label_names() == ["Business", "Sci/Tech", "Sports", "World"]
    assert summarize(ag)["labels"]["World"] > 0


def test_csv_jsonl_and_explicit_columns(tmp_path):
    (tmp_path / "a.csv").write_text('id,review,stars\n1,"great, really",5\n2,bad,1\n')
    ds = read_dataset(tmp_path / "a.csv", text_columns=["review"], label_column="stars")
    assert ds.texts == ("great, really", "bad") and ds.labels == ("5", "1")
    assert ds.label_names() == ["1", "5"]
    by_index = read_dataset(tmp_path / "a.csv", text_columns=[1], label_column=2)
    assert by_index.texts == ds.texts
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"premise": "a", "hypothesis": "b", "label": "yes"}) + "\n"
        + json.dumps({"premise": "c", "hypothesis": "d", "label": "no"}) + "\n")
    pairs = read_dataset(tmp_path / "b.jsonl")
    assert pairs.inputs() == [("a", "b"), ("c", "d")]
    assert pairs.label_ids(pairs.label_names()) == [1, 0]


def test_bom_and_crlf(tmp_path):
    (tmp_path / "a.tsv").write_bytes(b"\xef\xbb\xbfsentence\tlabel\r\nok\t1\r\nfine\t0\r\n")
    ds = read_dataset(tmp_path / "a.tsv")
    assert ds.texts == ("ok", "fine") and ds.labels == ("1", "0")


@pytest.mark.parametrize("name, content, line, message", [
    ("empty.tsv", b"", None, "file is empty"),
    ("header.tsv", b"sentence\tlabel\n", None, "header only"),
    ("ragged.tsv", b"sentence\tlabel\nok\t1\nbad\t0\textra\n", 3, "row has 3 fields"),
    ("utf8.tsv", b"sentence\tlabel\nok\t1\nbad \xff byte\t0\n", 3, "invalid UTF-8 at byte 4"),
    ("emptytext.tsv", b"sentence\tlabel\nok\t1\n \t0\n", 3, "empty text"),
    ("nolabel.tsv", b"sentence\tstars\nok\t1\n", 1, "no label column found"),
    ("data.parquet", b"x", None, "unknown file extension '.parquet'"),
    ("broken.jsonl", b'{"text": "a", "label": 1}\n{"text": \n', 2, "not a JSON object"),
])
def test_bad_files_name_file_and_line(tmp_path, name, content, line, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        read_dataset(tmp_path / name)
    assert e.value.where == str(tmp_path / name)
    assert e.value.line == line


def test_missing_label_column_lists_columns(tmp_path):
    (tmp_path / "a.tsv").write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(DataError, match=r"no label column 'gold' \(columns: sentence, label\)"):
        read_dataset(tmp_path / "a.tsv", label_column="gold")


def test_unseen_dev_label(tmp_path):
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t1\nodd\t2\n")
    with pytest.raises(DataError, match="label '2' is not among the known labels") as e:
        read_dataset(tmp_path / "dev.tsv", label_names=["0", "1"])
    assert e.value.line == 3
