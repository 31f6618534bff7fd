from pipeline.package.manifest import MANIFEST, check_manifest, package_files, sha256, write_manifest


def test_manifest_lists_every_file_and_catches_changes(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"\x08\x09graph")
    (tmp_path / "session.json").write_text("{}\n")
    path = write_manifest(tmp_path)
    lines = path.read_text().splitlines()
    assert lines == [f"{sha256(tmp_path / 'model' / 'model.onnx')}  model/model.onnx",
                     f"{sha256(tmp_path / 'session.json')}  session.json"]
    assert package_files(tmp_path) == ["model/model.onnx", "session.json"]  # never itself
    assert check_manifest(tmp_path) == []
    (tmp_path / "session.json").write_text('{"intra_op_num_threads": 64}\n')
    (tmp_path / "extra.txt").write_text("x")
    (tmp_path / "model" / "model.onnx").unlink()
    assert check_manifest(tmp_path) == ["model/model.onnx: missing", "session.json: changed",
                                        f"extra.txt: not in {MANIFEST}"]


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
