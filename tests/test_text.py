"""Sentence embeddings: offline default model, turn and session rows, batching."""

from __future__ import annotations

import numpy as np
import pytest

from features.align import SegmentationConfig, Segmenter
from features.base import ExtractionError, Sample
from features.text import SentenceEmbeddingExtractor

TRANSCRIPT = ("start_time\tstop_time\tspeaker\tvalue\n"
              "0.5\t1.5\tEllie\thow are you doing today\n"
              "2.0\t4.0\tParticipant\ti feel hopeless and sad every day\n"
              "5.0\t6.0\tEllie\twhat do you do to relax\n"
              "7.0\t9.5\tParticipant\tnothing really seems worth it anymore\n")


@pytest.fixture(scope="module")
def ext():
    return SentenceEmbeddingExtractor()


def sample(tmp_path, text=TRANSCRIPT, sid="s"):
    path = tmp_path / f"{sid}.csv"
    path.write_text(text, encoding="utf-8")
    return Sample(sid, sid, {"transcript": path})


def test_default_model_is_offline_minilm(ext):
    assert ext.dim == 384
    assert ext.library_versions()["model"] != "all-MiniLM-L6-v2"  # a fingerprint of the files


def test_turn_rows_and_session_pooling(tmp_path, ext):
    s = sample(tmp_path)
    turns = Segmenter(SegmentationConfig(level="turn")).segment(s).segments
    per_turn = ext.process_sample(s, turns)
    assert per_turn.shape == (2, 384) and per_turn.columns[0] == "emb_000"
    assert list(per_turn.index) == [("s", 2.0, 4.0), ("s", 7.0, 9.5)]
    session = ext.process_sample(s, None)
    assert session.shape == (1, 768) and list(session.index) == [("s", 0.0, 9.5)]
    np.testing.assert_allclose(session.filter(like="mean_").to_numpy()[0],
                               per_turn.to_numpy().mean(0), atol=1e-5)
    said = "i feel hopeless and sad every day nothing really seems worth it anymore"
    concat = ext._encoder().encode([said])
    np.testing.assert_allclose(session.filter(like="concat_").to_numpy()[0], concat[0], atol=1e-4)


def test_embeddings_carry_meaning(ext):
    e = ext._encoder().encode(["i feel hopeless and empty", "everything feels pointless and sad",
                               "i had a wonderful time with my friends"], normalize_embeddings=True)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1


def test_batched_equals_one_by_one(tmp_path, ext):
    a, b = sample(tmp_path, sid="a"), sample(tmp_path, TRANSCRIPT.replace("sad", "tired"), sid="b")
    together = ext.process_samples([(a, None), (b, None)]).frame
    alone = [ext.process_sample(a, None), ext.process_sample(b, None)]
    assert list(together.index.get_level_values(0)) == ["a", "b"]
    for sid, y in zip("ab", alone, strict=True):
        np.testing.assert_allclose(together.loc[[sid]].to_numpy(), y.to_numpy(), atol=1e-5)


def test_utterance_text_without_transcript(ext):
    s = Sample("u1", "Chandler", text="oh my god", duration=1.25)
    out = ext.process_sample(s, None)
    assert list(out.index) == [("u1", 0.0, 1.25)]
    assert ext.source_payload(s) == "oh my god" and ext.source_files(s) == {}


def test_bad_transcripts_are_errors_for_that_sample_only(tmp_path, ext):
    good = sample(tmp_path, sid="good")
    empty = sample(tmp_path, "", sid="empty")
    ellie_only = sample(tmp_path, "start_time\tstop_time\tspeaker\tvalue\n1\t2\tEllie\thi\n", sid="ellie")
    out = ext.process_samples([(good, None), (empty, None), (ellie_only, None)])
    assert out.frame.shape == (1, 768) and out.frame.index[0][0] == "good"
    assert isinstance(out.errors["empty"], ExtractionError) and "empty.csv" in str(out.errors["empty"])
    assert "speaker 'Participant'" in str(out.errors["ellie"])


def test_unknown_model_fails_early_with_instructions():
    ext = SentenceEmbeddingExtractor(model="no-such-org/no-such-model")
    with pytest.raises(ExtractionError, match="cannot load sentence encoder 'no-such-org/no-such-model'"):
        ext.check()


def test_long_session_text_warns_about_truncation(tmp_path, ext):
    rows = "".join(f"{i}.0\t{i}.5\tParticipant\t{'word ' * 40}\n" for i in range(20))
    s = sample(tmp_path, "start_time\tstop_time\tspeaker\tvalue\n" + rows, sid="long")
    out = ext.process_sample(s, None)
    assert any("the mean_ columns cover every turn" in w for w in out.attrs["warnings"])
