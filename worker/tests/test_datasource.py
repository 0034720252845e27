"""Training data in the forms people keep it (CSV, Parquet, a `datasets` save_to_disk folder, LLM2Vec's E5 folder):
each, written from the demo triples by pandas / pyarrow / datasets themselves, reads as exactly the triples of the
JSONL; columns are found by name or mapped; a bad row is named. And the preview-data report, checked against its
schema and against an independent token count with the transformers tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from conftest import DEMO_TRIPLES, worker_cli
from l3prune.data import DataError, Triple, read_triples
from l3prune.textpipe import TextPipeline

ROWS = 300

# LLM2Vec's E5 instructions and symmetric data sets, copied from llm2vec/dataset/E5Data.py (E5_EMBEDDING_PROMPTS)
# for the three files this test writes: the reference our table must agree with.
E5_REFERENCE = {
    "allnli_split2": ("Retrieve semantically similar text", True),
    "msmarco_passage": ("Given a web search query, retrieve relevant passages that answer the query", False),
    "quora_duplicates_split1": ("Given a question, retrieve questions that are semantically equivalent to the given question", True),
}
SEP = "!@#$%^&*()"  # E5Data's separator, removed before tokenisation


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(DEMO_TRIPLES, encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(ROWS)]


@pytest.fixture()
def jsonl(tmp_path, rows) -> Path:
    p = tmp_path / "triples.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p


@pytest.fixture()
def expected(jsonl, rows) -> list[Triple]:
    got = read_triples(jsonl)
    # The JSONL reader itself against json.loads of the same lines.
    assert [(t.query, t.positive, t.negative, t.task, t.instruction, t.symmetric) for t in got] == \
        [(r["query"], r["positive"], r["negative"], r["task"], None, False) for r in rows]
    assert any("," in t.query or '"' in t.query for t in got), "the sample holds texts CSV must quote"
    return got


# ---------------------------------------------------------------------------------------------------------------
# formats
def test_parquet_written_by_pandas_reads_as_the_jsonl(tmp_path, rows, expected):
    p = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(p, index=False)
    assert read_triples(p) == expected


def test_csv_and_tsv_written_by_pandas_read_as_the_jsonl(tmp_path, rows, expected):
    p = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    assert read_triples(p) == expected
    t = tmp_path / "t.tsv"
    pd.DataFrame(rows).to_csv(t, index=False, sep="\t")
    assert read_triples(t) == expected


def test_a_datasets_save_to_disk_folder_reads_as_the_jsonl(tmp_path, rows, expected):
    import datasets

    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "plain"))
    assert read_triples(tmp_path / "plain") == expected
    # A DatasetDict: its train split, or its only split.
    datasets.DatasetDict({"train": ds, "test": ds.select(range(5))}).save_to_disk(str(tmp_path / "dict"))
    assert read_triples(tmp_path / "dict") == expected
    datasets.DatasetDict({"mine": ds}).save_to_disk(str(tmp_path / "one"))
    assert read_triples(tmp_path / "one") == expected
    datasets.DatasetDict({"a": ds, "b": ds}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(DataError, match=r"holds the splits a, b and none is called train") as e:
        read_triples(tmp_path / "two")
    assert len(str(e.value).splitlines()) == 1


def test_an_e5_folder_reads_as_llm2vec_builds_its_strings(tmp_path, rows):
    folder = tmp_path / "e5"
    folder.mkdir()
    parts = {name: rows[i * 100 : (i + 1) * 100] for i, name in enumerate(E5_REFERENCE)}
    for name, part in parts.items():
        # E5's files hold query/positive/negative only.
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("query", "positive", "negative")}) + "\n" for r in part),
                                              encoding="utf-8")
    got = read_triples(folder)
    # E5Data.load_data: files in its datasets_list order (allnli, msmarco_passage, quora), "{prompt}; " + SEP + text for
    # queries and, for the symmetric data sets, for documents too; SEP + text otherwise. The model sees SEP removed.
    order = ["allnli_split2", "msmarco_passage", "quora_duplicates_split1"]
    want = []
    for name in order:
        prompt, symmetric = E5_REFERENCE[name]
        for r in parts[name]:
            q = f"{prompt}; " + SEP + r["query"]
            pos = (f"{prompt}; " if symmetric else "") + SEP + r["positive"]
            neg = (f"{prompt}; " if symmetric else "") + SEP + r["negative"]
            want.append((q.replace(SEP, ""), pos.replace(SEP, ""), neg.replace(SEP, ""), name.replace("_split1", "").replace("_split2", "")))
    pipe = TextPipeline()
    assert [(pipe.full_text(a), pipe.full_text(b), pipe.full_text(c), t.task) for t in got for a, b, c in [t.texts()]] == want
    # Anything else in the folder is refused rather than silently left out of the mix.
    (folder / "mine.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"also mine.jsonl, which E5 does not name"):
        read_triples(folder)


def test_a_folder_that_is_neither_layout_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="neither a datasets save_to_disk folder .* nor an E5 folder") as e:
        read_triples(tmp_path)
    assert len(str(e.value).splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# columns
def test_sentence_transformers_column_names_are_found_and_explicit_ones_are_taken(tmp_path, rows, expected):
    st = pd.DataFrame(rows).rename(columns={"query": "anchor"})
    st.to_parquet(tmp_path / "st.parquet", index=False)
    assert read_triples(tmp_path / "st.parquet") == expected
    short = pd.DataFrame(rows).rename(columns={"query": "question", "positive": "pos", "negative": "hard_negative"})
    short.to_csv(tmp_path / "short.csv", index=False)
    assert read_triples(tmp_path / "short.csv") == expected
    odd = pd.DataFrame(rows).rename(columns={"query": "q", "positive": "doc", "negative": "other", "task": "source"})
    odd.to_parquet(tmp_path / "odd.parquet", index=False)
    assert read_triples(tmp_path / "odd.parquet", {"query": "q", "positive": "doc", "negative": "other", "task": "source"}) == expected
    # A JSONL file with other names is mapped the same way.
    (tmp_path / "odd.jsonl").write_text("".join(json.dumps(r) + "\n" for r in odd.to_dict("records")), encoding="utf-8")
    assert read_triples(tmp_path / "odd.jsonl", {"query": "q", "positive": "doc", "negative": "other", "task": "source"}) == expected


def test_a_missing_or_ambiguous_column_is_one_sentence_naming_the_columns_and_the_flag(tmp_path, rows):
    pd.DataFrame(rows).drop(columns=["negative"]).to_csv(tmp_path / "no-neg.csv", index=False)
    with pytest.raises(DataError) as e:
        read_triples(tmp_path / "no-neg.csv")
    msg = str(e.value)
    assert "no column for the negative" in msg and "'query', 'positive', 'task'" in msg and "--data-columns negative=COLUMN" in msg
    both = pd.DataFrame(rows).rename(columns={"query": "anchor"}).assign(question=lambda d: d["anchor"])
    both.to_parquet(tmp_path / "both.parquet", index=False)
    with pytest.raises(DataError) as e:
        read_triples(tmp_path / "both.parquet")
    msg = str(e.value)
    assert "'anchor' and 'question' could each be the query" in msg and "--data-columns query=anchor" in msg
    with pytest.raises(DataError, match=r"maps query to column 'nope', which is not there; the columns found are 'query'"):
        read_triples(tmp_path / "no-neg.csv", {"query": "nope"})
    with pytest.raises(DataError, match=r"column 'query' is mapped to both the query and the negative"):
        read_triples(tmp_path / "no-neg.csv", {"query": "query", "negative": "query"})
    for p in (tmp_path / "no-neg.csv", tmp_path / "both.parquet"):
        with pytest.raises(DataError) as e:
            read_triples(p, {"query": "nope"})
        assert len(str(e.value).splitlines()) == 1


def test_null_and_empty_values_are_named_with_their_row(tmp_path, rows):
    bad = [dict(r) for r in rows[:10]]
    bad[4]["positive"] = None
    pd.DataFrame(bad).to_parquet(tmp_path / "null.parquet", index=False)
    with pytest.raises(DataError, match=r"null.parquet row 5: field 'positive' is null"):
        read_triples(tmp_path / "null.parquet")
    bad = [dict(r) for r in rows[:10]]
    bad[6]["query"] = " "
    pd.DataFrame(bad).rename(columns={"query": "anchor"}).to_csv(tmp_path / "empty.csv", index=False)
    # Line 8 of the file: the header, then rows 1..7 (the demo texts hold no line breaks).
    with pytest.raises(DataError, match=r"empty.csv:8: column 'anchor' \(the query\) is empty"):
        read_triples(tmp_path / "empty.csv")
    import datasets

    bad = [dict(r) for r in rows[:10]]
    bad[2]["negative"] = ""
    datasets.Dataset.from_list(bad).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match=r"ds row 3: field 'negative' is empty"):
        read_triples(tmp_path / "ds")


def test_the_data_columns_flag_reaches_analyze_and_train_specs(demo_model, tmp_path):
    from l3prune.__main__ import build_parser
    from l3prune.analyze import spec_from_args

    data = tmp_path / "d.csv"
    data.write_text("q,p,n\na,b,c\n", encoding="utf-8")
    args = build_parser().parse_args(["analyze", "--run-dir", str(tmp_path / "r"), "--model", str(demo_model), "--data", str(data),
                                      "--data-columns", "query=q, positive=p,negative=n"])
    assert spec_from_args(args).dataColumns == {"query": "q", "positive": "p", "negative": "n"}
    p = worker_cli("analyze", "--run-dir", str(tmp_path / "r2"), "--model", str(demo_model), "--data", str(data), "--data-columns", "query")
    assert p.returncode == 2 and "--data-columns" in p.stderr and "key=value" in p.stderr
    p = worker_cli("train", "--run-dir", str(tmp_path / "r3"), "--model", str(demo_model), "--keep", "2", "--data", str(data),
                   "--data-columns", "anchor=q")
    assert p.returncode == 2 and "--data-columns" in p.stderr and "anchor" in p.stderr, p.stderr
    assert not (tmp_path / "r3").exists(), "a refused spec touches no run folder"


# ---------------------------------------------------------------------------------------------------------------
# preview-data
def report_validator(schemas):
    s = schemas["data-preview"]
    return jsonschema.Draft202012Validator({"$ref": s["$id"]}, registry=schemas["registry"])


def preview(*args: str) -> dict:
    p = worker_cli("preview-data", *args)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout[:500]
    return json.loads(lines[0])


def test_the_preview_report_is_schema_valid_and_its_histogram_is_the_tokenizers_count(tmp_path, rows, demo_model, schemas):
    from transformers import AutoTokenizer

    folder = tmp_path / "e5"
    folder.mkdir()
    parts = {name: rows[i * 100 : (i + 1) * 100] for i, name in enumerate(E5_REFERENCE)}
    for name, part in parts.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    max_length = 24
    out = preview("--data", str(folder), "--model", str(demo_model), "--max-length", str(max_length), "--chat-template", "off")
    report_validator(schemas).validate(out)
    assert out["format"] == "e5" and out["rows"] == ROWS and not out["chatWrapped"]
    assert out["tasks"] == [{"name": "allnli", "rows": 100}, {"name": "msmarco_passage", "rows": 100}, {"name": "quora_duplicates", "rows": 100}]

    # Independently: E5Data's strings, counted by the fast tokenizer with special tokens and no truncation, binned by numpy.
    tok = AutoTokenizer.from_pretrained(demo_model, use_fast=True)
    assert tok.is_fast
    texts = {"query": [], "positive": [], "negative": []}
    for name in ["allnli_split2", "msmarco_passage", "quora_duplicates_split1"]:
        prompt, symmetric = E5_REFERENCE[name]
        for r in parts[name]:
            texts["query"].append(f"{prompt}; {r['query']}")
            texts["positive"].append((f"{prompt}; " if symmetric else "") + r["positive"])
            texts["negative"].append((f"{prompt}; " if symmetric else "") + r["negative"])
    lengths = {k: [len(ids) for ids in tok(v)["input_ids"]] for k, v in texts.items()}
    every = lengths["query"] + lengths["positive"] + lengths["negative"]
    got = out["lengths"]
    counts, _ = np.histogram(every, bins=got["edges"])
    # numpy's last bin is closed on the right, ours half-open; the edges reach past the longest text, so they agree.
    assert max(every) < got["edges"][-1]
    assert got["counts"] == counts.tolist() and sum(got["counts"]) == got["texts"] == 3 * ROWS
    assert got["truncated"] == sum(x > max_length for x in every) > 0
    assert got["truncatedByKind"] == {k: sum(x > max_length for x in v) for k, v in lengths.items()}
    assert got["max"] == max(every) and got["mean"] == pytest.approx(np.mean(every), abs=1e-3)
    assert got["p50"] == int(np.percentile(every, 50, method="lower"))
    assert got["p95"] == int(np.percentile(every, 95, method="inverted_cdf"))
    assert got["edges"][0] == 0 and got["edges"][-1] > max_length and not got["sampled"]
    # A max length far past every text: the bins cover the texts, not the empty range up to it.
    wide = preview("--data", str(folder), "--model", str(demo_model), "--max-length", "4096", "--chat-template", "off")["lengths"]
    assert max(every) < wide["edges"][-1] <= 4096 and wide["truncated"] == 0
    assert wide["counts"] == np.histogram(every, bins=wide["edges"])[0].tolist()
    # The samples are rows of the data, as the model sees them, counted the same way.
    for s in out["samples"]:
        i = s["row"] - 1
        assert s["query"] == texts["query"][i] and s["positive"] == texts["positive"][i]
        assert s["queryTokens"] == lengths["query"][i] and s["negativeTokens"] == lengths["negative"][i]
    assert len(out["samples"]) == 3 and len({s["row"] for s in out["samples"]}) == 3


def test_a_large_data_set_is_sampled_deterministically_and_says_so(tmp_path, jsonl, demo_model, schemas):
    args = ("--data", str(jsonl), "--model", str(demo_model), "--max-rows", "50", "--seed", "3")
    a, b = preview(*args), preview(*args)
    report_validator(schemas).validate(a)
    assert a["lengths"]["sampled"] and a["lengths"]["rowsCounted"] == 50 and a["lengths"]["texts"] == 150
    assert a["rows"] == ROWS and a["tasks"] == [{"name": "wordnet-sense", "rows": ROWS}], "rows and tasks count the whole data"
    assert (a["lengths"], a["samples"]) == (b["lengths"], b["samples"])
    # chatTemplate auto: SmolLM2's user turn around every text, as analyze and train give it.
    assert a["chatWrapped"] and all(s["query"].startswith("<|im_start|>user\n") for s in a["samples"])
    assert a["columns"] == {"query": "query", "positive": "positive", "negative": "negative", "instruction": None, "task": "task", "symmetric": None}


def test_the_preview_refuses_bad_data_in_one_sentence(tmp_path, demo_model, rows):
    pd.DataFrame(rows[:5]).rename(columns={"negative": "neg", "positive": "pos"}).assign(hard_negative="x").to_csv(tmp_path / "a.csv", index=False)
    p = worker_cli("preview-data", "--data", str(tmp_path / "a.csv"), "--model", str(demo_model))
    assert p.returncode == 2 and p.stdout == ""
    line = p.stderr.strip().splitlines()[-1]
    assert "'neg' and 'hard_negative' could each be the negative" in line and "--data-columns negative=neg" in line
    p = worker_cli("preview-data", "--data", str(tmp_path / "a.csv"), "--model", str(demo_model), "--data-columns", "negative=hard_negative")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["columns"]["negative"] == "hard_negative"
