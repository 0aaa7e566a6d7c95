"""Transcript reading and turn segmentation."""

from __future__ import annotations

import pytest

from features.align import SegmentationConfig, Segmenter, fixed_windows, read_transcript
from features.base import ExtractionError, Sample

DAIC = ("start_time\tstop_time\tspeaker\tvalue\n"
        "1.0\t2.0\tEllie\thi i'm ellie\n"
        "2.5\t4.0\tParticipant\thello\n"
        "4.1\t5.0\tParticipant\tnice to meet you\n"
        "6.0\t7.0\tEllie\thow are you\n"
        "8.0\t20.0\tParticipant\tone two three four five six\n")
EDAIC = ("Start_Time,End_Time,Text,Confidence\n"
         "0.5,1.5,hello there,0.9\n"
         "2.0,3.0,i'm fine,0.8\n")


def seg(tmp_path, text, **cfg):
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    sample = Sample("s", "s", {"transcript": path})
    return Segmenter(SegmentationConfig(level="turn", **cfg)).segment(sample)


def test_daic_participant_turns(tmp_path):
    out = seg(tmp_path, DAIC)
    assert [(s.start, s.end, s.text) for s in out.segments] == [
        (2.5, 4.0, "hello"), (4.1, 5.0, "nice to meet you"), (8.0, 20.0, "one two three four five six")]
    assert all(s.speaker == "Participant" for s in out.segments) and out.warnings == []


def test_edaic_has_no_speaker_column(tmp_path):
    out = seg(tmp_path, EDAIC, speaker="all")
    assert [(s.start, s.end, s.speaker) for s in out.segments] == [(0.5, 1.5, None), (2.0, 3.0, None)]


# --- bad transcripts ---------------------------------------------------------------------------

def test_without_a_speaker_column_the_participant_filter_is_an_error(tmp_path):
    with pytest.raises(ExtractionError, match=r"t.csv: .*no speaker column.*'Participant'.*speaker: all") as err:
        seg(tmp_path, EDAIC)
    assert err.value.path == str(tmp_path / "t.csv")
    assert len(seg(tmp_path, DAIC, speaker="all").segments) == 5  # every turn, Ellie's too


def test_infinite_stop_times_and_rows_with_missing_fields_are_warnings_with_lines(tmp_path):
    text = ("start_time\tstop_time\tspeaker\tvalue\n"
            "1.0\t2.0\tParticipant\tfine\n"
            "3.0\tinf\tParticipant\tgoes on\n"
            "5.0\t\tParticipant\tno stop\n"
            "7.0\t8.0\tParticipant\t\n"
            "9.0\t10.0\tParticipant\tlast\n")
    out = seg(tmp_path, text)
    warnings = " ".join(out.warnings)
    assert "t.csv" in warnings and "line 3" in warnings and "infinite stop time" in warnings
    assert "line 4" in warnings and "missing" in warnings
    assert "line 5" in warnings and "no text" in warnings
    # the infinite turn ends where the next one starts; the turn without a stop time is left out
    assert [(s.start, s.end) for s in out.segments] == [(1.0, 2.0), (3.0, 5.0), (7.0, 8.0), (9.0, 10.0)]


def test_turns_past_the_end_of_the_audio_are_cut_for_every_modality_alike(tmp_path):
    from fixtures import tone, write_wav

    audio = write_wav(tmp_path / "a.wav", tone(6.0))
    path = tmp_path / "t.csv"
    path.write_text("start_time\tstop_time\tspeaker\tvalue\n1.0\t2.0\tParticipant\tin\n"
                    "5.0\t7.5\tParticipant\tcut\n8.0\t9.0\tParticipant\tafter\n", encoding="utf-8")
    out = Segmenter(SegmentationConfig(level="turn")).segment(Sample("s", "s", {"transcript": path, "audio": audio}))
    assert [(s.start, s.end) for s in out.segments] == [(1.0, 2.0), (5.0, 6.0)]
    warnings = " ".join(out.warnings)
    assert "t.csv" in warnings and "line 3" in warnings and "line 4" in warnings and "6.00 s" in warnings
    # every extractor gets the same segments, so rows join across modalities
    from features.align import Segmenter as S
    assert S(SegmentationConfig(level="turn")).source_files(Sample("s", "s", {"transcript": path, "audio": audio})) == {
        "transcript": path, "audio": audio}


def test_merge_short_gaps_and_split_long_turns(tmp_path):
    out = seg(tmp_path, DAIC, merge_gap=0.2, max_turn=5.0)
    spans = [(s.start, s.end) for s in out.segments]
    assert spans[0] == (2.5, 5.0)
    assert spans[1:] == [(8.0, 12.0), (12.0, 16.0), (16.0, 20.0)]
    assert out.segments[0].text == "hello nice to meet you"
    assert " ".join(s.text for s in out.segments[1:]) == "one two three four five six"


def test_min_turn_absorbs_short_turns(tmp_path):
    out = seg(tmp_path, DAIC, min_turn=1.0)
    assert [(s.start, s.end) for s in out.segments] == [(2.5, 4.0), (4.1, 20.0)]


def test_overlapping_and_unsorted_turns_warn(tmp_path):
    text = ("start_time\tstop_time\tspeaker\tvalue\n"
            "5.0\t6.0\tParticipant\tb\n"
            "1.0\t3.0\tParticipant\ta\n"
            "2.5\t4.0\tParticipant\tc\n")
    out = seg(tmp_path, text)
    assert [(s.start, s.end) for s in out.segments] == [(1.0, 4.0), (5.0, 6.0)]
    assert any("not in time order" in w for w in out.warnings)
    assert any("overlapping" in w for w in out.warnings)


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("start_time\tstop_time\tspeaker\tvalue\n", "no turns"),
    ("from\tto\tspeaker\tvalue\n1\t2\tParticipant\thi\n", "lacks start time, end time"),
    ("start_time\tstop_time\tspeaker\tvalue\n1\tx\tParticipant\thi\n", "no usable turn: missing or non-numeric times in line 2"),
    ("start_time\tstop_time\tspeaker\tvalue\n-1\t2\tParticipant\thi\n", "negative times"),
    ("start_time\tstop_time\tspeaker\tvalue\n3\t2\tParticipant\thi\n", "end time before start time"),
    ("start_time\tstop_time\tspeaker\tvalue\n1\t2\tEllie\thi\n", "no turns of speaker 'Participant'"),
])
def test_bad_transcripts_name_the_file(tmp_path, text, match):
    with pytest.raises(ExtractionError, match=match) as err:
        seg(tmp_path, text)
    assert "t.csv" in str(err.value)


def test_bad_encoding(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("start_time\tstop_time\tspeaker\tvalue\n1\t2\tParticipant\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ExtractionError, match="t.csv: transcript is not valid UTF-8"):
        read_transcript(path)


def test_fixed_windows():
    assert [(w.start, w.end) for w in fixed_windows(25.0, 10.0, 10.0)] == [(0, 10), (10, 20), (20, 25)]
    assert [(w.start, w.end) for w in fixed_windows(4.0, 10.0, 5.0)] == [(0, 4)]
    assert fixed_windows(0.0, 10.0, 10.0) == []


def test_bad_segmentation_config():
    with pytest.raises(ValueError):
        SegmentationConfig(max_turn=0)
    with pytest.raises(ValueError):
        SegmentationConfig(level="sentence")
