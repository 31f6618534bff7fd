"""The same 4-point sweep on Hydra's basic launcher, joblib (2 workers), a Ray cluster started by the
test (ray.init(address=...) through conf/hydra/launcher/ray_cluster.yaml) and Submitit's local
executor: byte-identical artifacts, every point ok, and no two latency measurements overlapping
(the host-wide benchmark lock holds across workers and launchers). A Ray address that does not
answer is one line, quickly."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.e2e.sweep_project import MLP, artifact_hashes, env, lock_intervals_disjoint, make_project, points, run_sweep, sweep_cmd

POINTS = [*MLP, "quantization=none,dynamic_int8", "target.threads=1,2"]
RAY_HEAD = """\
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()   # until the test closes it
ray.shutdown()
"""


@pytest.mark.slow
def test_same_sweep_same_artifacts_on_basic_joblib_ray_and_submitit(tmp_path):
    project = make_project(tmp_path / "project")
    dirs = {"basic": run_sweep(project, *POINTS)}
    dirs["joblib"] = run_sweep(project, *POINTS, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    # Ray 2.60's local clusters use token authentication (the token in ~/.ray/auth_token): a driver
    # connecting to one says so with RAY_AUTH_MODE=token
    ray_env = {**env(project), "RAY_AUTH_MODE": "token"}
    head = subprocess.Popen([sys.executable, "-c", RAY_HEAD], cwd=project, env=ray_env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = head.stdout.readline().strip()
        assert address, "the Ray head did not start"
        dirs["ray"] = run_sweep(project, *POINTS, "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}",
                                extra_env={"RAY_AUTH_MODE": "token"})
    finally:
        head.stdin.close()
        head.wait(timeout=120)
    dirs["submitit"] = run_sweep(project, *POINTS, "hydra/launcher=submitit_local")

    reference = artifact_hashes(dirs["basic"])
    assert len(reference) == 4
    for name, d in dirs.items():
        assert all(p["status"] == "ok" for p in points(d).values()), name
        assert artifact_hashes(d) == reference, name
    assert len({p["pid"] for p in points(dirs["submitit"]).values()}) == 4  # one process per point
    assert len({p["pid"] for p in points(dirs["ray"]).values()} - {p["pid"] for p in points(dirs["basic"]).values()}) >= 1
    assert lock_intervals_disjoint(*dirs.values())


def test_a_ray_address_that_does_not_answer_is_one_line(tmp_path):
    project = make_project(tmp_path / "project")
    start = time.monotonic()
    proc = subprocess.run(sweep_cmd(*MLP, "hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=127.0.0.1:9"),
                          cwd=project, env=env(project), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - start < 60
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "no Ray cluster answers at 127.0.0.1:9" in err[0]
    assert not list(project.glob("sweeps/*/*/0"))
