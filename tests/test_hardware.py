from pipeline.hardware import cpu_info


def test_cpu_info_reports_model_and_isa_flags():
    info = cpu_info()
    assert info["model"] and info["model"] != "unknown"
    assert info["cores"] >= 1
    for flag in ("avx2", "avx512", "vnni", "amx"):
        assert isinstance(info["isa"][flag], bool)


def test_isa_flags_match_proc_cpuinfo():
    flags = set()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    isa = cpu_info()["isa"]
    assert isa["avx2"] == ("avx2" in flags)
    assert isa["avx512"] == ("avx512f" in flags)
    assert isa["vnni"] == ("avx512_vnni" in flags or "avx_vnni" in flags)
