import json
import subprocess
import sys

from pipeline.evaluate.environment import environment, package_versions, target_specific


def test_versions_without_importing_frameworks():
    code = (
        "import sys, json; from pipeline.evaluate.environment import package_versions;"
        "v = package_versions();"
        "print(json.dumps([v, [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    versions, imported = json.loads(out)
    assert imported == []
    import numpy
    import onnx
    import onnxruntime

    assert versions["onnxruntime"] == onnxruntime.__version__
    assert versions["onnx"] == onnx.__version__
    assert versions["numpy"] == numpy.__version__
    assert package_versions() == versions


def test_environment_has_cpu_isa_and_target(tmp_path):
    env = environment({"provider": "CPUExecutionProvider", "intra_op_threads": 1, "inter_op_threads": 0}, "b", tmp_path / "model")
    assert env["build"] == "b"
    assert env["execution_provider"] == "CPUExecutionProvider"
    assert env["threads"] == {"intra_op": 1, "inter_op": 0}
    assert {"avx2", "avx512", "vnni", "amx"} <= set(env["isa"])
    assert env["cpu"]["model"]
    assert "target_specific" not in env  # no passes.json
    assert "timestamp" not in json.dumps(env)


def test_target_specific_from_passes_json(tmp_path):
    artifact = tmp_path / "b" / "model"
    passes = tmp_path / "b" / "passes"
    passes.mkdir(parents=True)
    assert target_specific(artifact) is None
    (passes / "passes.json").write_text(json.dumps({"target_specific": True, "passes": []}))
    assert target_specific(artifact) is True
    (passes / "passes.json").write_text(json.dumps({"passes": [{"name": "ort_optimize", "target_specific": True}]}))
    assert target_specific(artifact) is True
    assert environment({}, "b", artifact)["target_specific"] is True
    record = {"name": "ort_optimize", "info": {"level": "all", "target_specific": True}}  # as the passes stage writes
    (passes / "passes.json").write_text(json.dumps({"passes": [{"name": "shape_inference", "info": {}}, record]}))
    assert target_specific(artifact) is True
    (passes / "passes.json").write_text(json.dumps({"passes": [{"name": "shape_inference"}]}))
    assert target_specific(artifact) is False


def test_host_id_is_stable_across_processes_and_names_the_machine():
    import socket

    from pipeline.evaluate.environment import host
    from pipeline.hardware import cpu_info

    code = "import json; from pipeline.evaluate.environment import host; print(json.dumps(host()))"
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    here = host()
    assert runs[0] == runs[1] == here  # nothing in it varies between runs on one machine
    assert here["hostname"] == socket.gethostname()
    assert here["cpu"] == cpu_info()["model"] and here["cores"] == cpu_info()["cores"]
    assert here["id"] == f"{here['hostname']} ({here['cpu']}, {here['cores']} cores)"
    env = environment({}, "b", "missing/model")
    assert env["host"] == here


def test_headline_carries_the_host():
    from pipeline.evaluate.metrics import headline

    assert headline({"environment": {"host": {"id": "h (cpu, 2 cores)"}}, "speedup": 1.5}) == {
        "speedup": 1.5, "host": "h (cpu, 2 cores)"}
