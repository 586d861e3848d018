"""`dialer amd analyze`: JSON lines, directory order, END_OF_AUDIO, stereo/resampled input,
bad parameters and bad files."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
from click.testing import CliRunner

from amd import audio
from cli import main


def _tone_file(path, rate=8000, seconds=3.0):
    t = np.arange(int(rate * seconds)) / rate
    x = np.where((t > 1.0) & (t < 1.5), 6000 * np.sin(2 * np.pi * 1000 * t), 0.0)
    audio.write_wav(path, audio.to_int16(x), rate)


def test_analyze_directory_json_lines_in_name_order(tmp_path, captures_dir):
    d = tmp_path / "calls"
    d.mkdir()
    shutil.copy(captures_dir / "21_unicast_native_decoded.wav", d / "b_capture.wav")
    _tone_file(d / "a_beep.wav")
    audio.write_wav(d / "c_short.wav", np.zeros(400, dtype=np.int16))     # 50 ms: ends undecided
    (d / "notes.txt").write_text("not audio")
    (d / "sub").mkdir()
    _tone_file(d / "sub" / "nested.wav")                                    # not recursive
    result = CliRunner().invoke(main, ["amd", "analyze", "--json", str(d)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["file"].rsplit("/", 1)[1] for line in lines] == ["a_beep.wav", "b_capture.wav", "c_short.wav"]
    assert all(set(line) == {"file", "result", "cause", "decision_ms", "beep_end_ms"} for line in lines)
    beep, capture, short = lines
    assert beep["result"] == "MACHINE" and beep["cause"] == "BEEP" and abs(beep["beep_end_ms"] - 1500) <= 40
    assert capture["result"] == "MACHINE" and 14500 <= capture["beep_end_ms"] <= 16100
    assert short == {"file": str(d / "c_short.wav"), "result": "NOTSURE", "cause": "END_OF_AUDIO",
                     "decision_ms": 60, "beep_end_ms": None}


def test_stereo_16k_file_and_app_amd_mode(tmp_path):
    mono = tmp_path / "mono.wav"
    _tone_file(mono, rate=16000)
    stereo = tmp_path / "stereo.wav"
    subprocess.run(["sox", "-M", str(mono), str(mono), str(stereo)], check=True, timeout=30)
    result = CliRunner().invoke(main, ["amd", "analyze", "--json", str(stereo)])
    line = json.loads(result.output)
    assert line["cause"] == "BEEP" and abs(line["beep_end_ms"] - 1500) <= 40
    result = CliRunner().invoke(main, ["amd", "analyze", "--json", "--campaign-params", "mode=app_amd greeting=1000",
                                       str(stereo)])
    line = json.loads(result.output)
    # app_amd: the tone is one 500 ms word, then 800 ms of silence -> HUMAN at 2.3 s (one frame
    # later when the 16 kHz decimator's 1.4 ms delay pushes the tone's end into the next frame)
    assert (line["result"], line["cause"]) == ("HUMAN", "AFTERGREETINGSILENCE")
    assert line["decision_ms"] in (2300, 2320)


def test_table_output_and_errors(tmp_path):
    f = tmp_path / "x.wav"
    _tone_file(f)
    long_name = tmp_path / ("a-long-recording-name-that-a-narrow-table-would-cut-" + "x" * 40 + ".wav")
    _tone_file(long_name)
    result = CliRunner().invoke(main, ["amd", "analyze", str(f), str(long_name)])
    assert result.exit_code == 0 and "BEEP" in result.output and "MACHINE" in result.output
    assert "2 files: MACHINE 2" in result.output
    # the path wraps inside its column, whole (its end tells the files apart)
    assert "x" * 20 + ".wav" in result.output.replace("│", "").replace(" ", "").replace("\n", "")
    bad = CliRunner().invoke(main, ["amd", "analyze", "--campaign-params", "nonsense=3", str(f)])
    assert bad.exit_code != 0 and "unknown AMD parameter 'nonsense'" in bad.output
    missing = CliRunner().invoke(main, ["amd", "analyze", str(tmp_path / "nope.wav")])
    assert missing.exit_code != 0 and "no such file" in missing.output
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVE")
    mixed = CliRunner().invoke(main, ["amd", "analyze", "--json", str(f), str(broken)])
    assert mixed.exit_code == 1
    assert json.loads(mixed.output.splitlines()[0])["cause"] == "BEEP"     # the good file still reported
    assert "1 of 2 files could not be analysed" in mixed.output


def test_an_empty_directory_and_a_vad_mode_out_of_range_are_usage_errors(tmp_path):
    """QA: a directory without WAV files printed nothing and exited 0; vad_mode=4 ended in
    webrtcvad's traceback after the batch had started."""
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = runner.invoke(main, ["amd", "analyze", "--json", str(empty)])
    assert out.exit_code == 2 and "no *.wav file" in out.output
    out = runner.invoke(main, ["amd", "analyze", str(empty), "--campaign-params", "vad_mode=4"])
    assert out.exit_code == 2 and "modes are 0-3" in out.output


def test_fake_switch_refuses_a_port_out_of_range():
    out = CliRunner().invoke(main, ["fake-switch", "--port", "70000"])
    assert out.exit_code == 2 and "70000" in out.output


def test_a_bad_enum_parameter_lists_the_values_it_takes(tmp_path):
    empty = tmp_path / "x.wav"
    empty.write_bytes(b"")
    out = CliRunner().invoke(main, ["amd", "analyze", str(empty), "--campaign-params", "mode=bogus"])
    assert out.exit_code == 2 and "'dialer' or 'app_amd'" in out.output
