import json
import subprocess
import sys

from pipeline.evaluate.environment import host
from pipeline.report import write_report
from pipeline.report.host import REMEASURE, host_lines, hosts_of

HERE = "here-host (Test CPU, 2 cores)"
THERE = "ci-box (Intel(R) Xeon(R) Platinum, 8 cores)"


def _on(m, host_id):
    m = json.loads(json.dumps(m))
    m["environment"]["host"] = {"id": host_id}
    return m


def test_all_measured_here_is_said_once(make_metrics):
    metrics = {n: _on(make_metrics(n, "none", 1.0, 1.0), HERE) for n in ("a", "b")}
    assert host_lines(metrics, here=HERE) == [f"All numbers were measured on this host: {HERE}."]
    assert host_lines({}, here=HERE) == []


def test_another_host_is_named_with_the_command_to_remeasure(make_metrics):
    metrics = {"a": _on(make_metrics("a", "none", 1.0, 1.0), THERE),
               "b": _on(make_metrics("b", "none", 1.0, 1.0), THERE)}
    lines = host_lines(metrics, here=HERE)
    assert lines[0] == f"Latency and fidelity of every build were measured on host {THERE}, not on this host ({HERE})."
    assert f"`{REMEASURE}`" in lines[-1] and "dvc repro --force -s evaluate@BUILD" in lines[-1]


def test_mixed_hosts_and_unrecorded_files(make_metrics):
    old = make_metrics("old", "none", 1.0, 1.0)  # written before hosts were recorded: cpu only
    metrics = {"a": _on(make_metrics("a", "none", 1.0, 1.0), HERE), "old": old}
    assert hosts_of(metrics) == {HERE: ["a"], "an unrecorded host (Test CPU, 2 cores)": ["old"]}
    lines = host_lines(metrics, here=HERE)
    assert lines[0] == ("Latency and fidelity of 1 of 2 builds (old) were measured on an unrecorded host "
                        f"(Test CPU, 2 cores), not on this host ({HERE}).")
    assert "Measured on this host: a." in lines


def test_report_says_numbers_are_from_another_host(tmp_path, make_metrics):
    d = tmp_path / "m"
    d.mkdir()
    (d / "a.json").write_text(json.dumps(_on(make_metrics("a", "none", 1.0, 1.0), THERE)))
    text = write_report(d, tmp_path / "r").read_text()
    where = text.split("## Where these numbers come from", 1)[1].split("\n## ", 1)[0]
    assert f"measured on host {THERE}, not on the host that wrote this report ({host()['id']})" in where
    assert f"`{REMEASURE}`" in where and "`python -m pipeline.report.host`" in where
    (d / "a.json").write_text(json.dumps(_on(make_metrics("a", "none", 1.0, 1.0), host()["id"])))
    text = write_report(d, tmp_path / "r").read_text()
    # the file may be read, or restored by DVC's run-cache, on another machine: it never says "this host"
    assert f"All numbers were measured on the host that wrote this report: {host()['id']}." in text
    assert "this host" not in text


def test_command_line_warns_for_make_build(tmp_path, make_metrics):
    d = tmp_path / "m"
    d.mkdir()
    cmd = [sys.executable, "-m", "pipeline.report.host", "--metrics-dir", str(d)]
    assert "no measurements yet" in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    (d / "a.json").write_text(json.dumps(_on(make_metrics("a", "none", 1.0, 1.0), THERE)))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith(f"warning: Latency and fidelity of every build were measured on host {THERE}")
    assert REMEASURE in out[-1]
