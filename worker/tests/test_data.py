import json

import pytest

from l3prune.data import DataError, read_triples, sample_batches
from l3prune.textpipe import Text, TextPipeline


def write(tmp_path, lines):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


GOOD = json.dumps({"query": "q", "positive": "p", "negative": "n"})


@pytest.mark.parametrize(
    "bad,expect",
    [
        ("{not json", "not valid JSON"),
        ('["a", "b", "c"]', "expected a JSON object"),
        ('{"query": "q", "positive": "p"}', "missing field(s) negative"),
        ('{"query": "q", "positive": 3, "negative": "n"}', "field 'positive' must be a string"),
        ('{"query": "  ", "positive": "p", "negative": "n"}', "field 'query' is empty"),
        ('{"query": "q", "positive": "p", "negative": "n", "task": 5}', "optional field 'task'"),
    ],
)
def test_bad_line_is_reported_with_its_line_number(tmp_path, bad, expect):
    p = write(tmp_path, [GOOD, "", bad, GOOD])
    with pytest.raises(DataError) as e:
        read_triples(p)
    assert f"{p}:3:" in str(e.value) and expect in str(e.value)


def test_missing_and_empty_files_are_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_triples(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no triples"):
        read_triples(tmp_path / "empty.jsonl")


def test_the_sample_is_the_papers_random_sample_cut_in_order_into_full_batches(tmp_path):
    import random

    rows = [json.dumps({"query": f"q{i}", "positive": "p", "negative": "n", "task": "ab"[i % 2]}) for i in range(40)]
    triples = read_triples(write(tmp_path, rows))
    a = sample_batches(triples, 30, 4, seed=7)
    assert a == sample_batches(triples, 30, 4, seed=7)
    assert a != sample_batches(triples, 30, 4, seed=8)
    # random.sample of 30, chunked in sampled order into batches of exactly 4: 7 batches, the 2 left over dropped.
    order = [triples[i] for i in random.Random(7).sample(range(40), 30)]
    assert a == [order[j : j + 4] for j in range(0, 28, 4)]
    assert all(len(b) == 4 for b in a), "a batch never has fewer than batchSize triples"
    assert any(len({t.task for t in b}) > 1 for b in a), "batches mix tasks, as the paper's do"


def test_task_homogeneous_sampling_is_kept_as_an_option(tmp_path):
    rows = [json.dumps({"query": f"q{i}", "positive": "p", "negative": "n", "task": "ab"[i % 2]}) for i in range(40)]
    triples = read_triples(write(tmp_path, rows))
    h = sample_batches(triples, 30, 4, seed=7, task_homogeneous=True)
    assert h == sample_batches(triples, 30, 4, seed=7, task_homogeneous=True)
    assert h and all(len(b) == 4 for b in h) and all(len({t.task for t in b}) == 1 for b in h)
    with pytest.raises(DataError, match="no task of the sample has 20 triples.*taskHomogeneous"):
        sample_batches(triples, 30, 20, seed=7, task_homogeneous=True)
    with pytest.raises(DataError, match="fewer than 64 triples"):
        sample_batches(triples, 6400, 64, seed=0)


def test_instruction_prefixes_only_the_query(tmp_path):
    t = read_triples(write(tmp_path, [json.dumps({"query": "q", "positive": "p", "negative": "n", "instruction": "Find it"})]))[0]
    # The paper's E5 format, "{instruction}; {query}" (the old "Instruct: ...\nQuery: ..." string was not the
    # paper's); the text pipeline builds the string and pools only the query's own tokens.
    assert t.query_text() == Text("q", "Find it") and TextPipeline().full_text(t.query_text()) == "Find it; q"
    assert t.doc_texts() == (Text("p"), Text("n")) and t.positive == "p"
    sym = read_triples(write(tmp_path, [json.dumps({"query": "q", "positive": "p", "negative": "n", "instruction": "Find it", "symmetric": True})]))[0]
    assert sym.doc_texts() == (Text("p", "Find it"), Text("n", "Find it"))
    with pytest.raises(DataError, match="'symmetric' must be true or false"):
        read_triples(write(tmp_path, [json.dumps({"query": "q", "positive": "p", "negative": "n", "symmetric": "yes"})]))


HOSTILE_LINES = [
    (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b', "label": "a"}', "nested too deeply"),
    (b'{"text": "caf\xe9", "label": "a"}', "not valid UTF-8"),
    (b'{"text": ' + b"9" * 5000 + b', "label": "a"}', "more digits"),
    (b'{"text": NaN, "label": "a"}', "NaN is not a JSON number"),
    (b'{"text": 1e400, "label": "a"}', "out of range"),
]


@pytest.mark.parametrize("line, needle", HOSTILE_LINES)
def test_training_and_evaluation_data_report_a_hostile_line_alike(tmp_path, line, needle):
    """data.py (triples) and evaltasks.py (evaluation sets) read JSONL through one reader: the same line gets the
    same one-sentence DataError naming file:line, never an internal error."""
    from l3prune import evaltasks

    triples = tmp_path / "t.jsonl"
    triples.write_bytes(GOOD.encode() + b"\n" + line.replace(b'"text"', b'"query"') + b"\n")
    (tmp_path / "eval").mkdir()
    clustering = tmp_path / "eval" / "clustering.jsonl"
    clustering.write_bytes(b'{"text": "t", "label": "a"}\n' + line + b"\n")
    for read, path in ((lambda: read_triples(triples), triples), (lambda: evaltasks.load_clustering(tmp_path, None), clustering)):
        with pytest.raises(DataError) as e:
            read()
        message = str(e.value)
        assert f"{path}:2:" in message and needle in message and len(message.splitlines()) == 1, message
