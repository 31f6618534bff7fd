from pipeline.errors import ConfigError, StageError, first_line, one_line


def test_one_line_takes_the_first_non_empty_line_with_the_type():
    assert one_line(ValueError("  \n  bad thing\nmore detail")) == "ValueError: bad thing"
    assert one_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("\n\nreason\nx")) == "reason"
    assert first_line(RuntimeError("")) == "RuntimeError"


def test_config_and_stage_errors_are_one_line():
    err = ConfigError("unknown pass 'x'", key="builds.b.passes[0].name", source="conf/recipe/b.yaml", choices=["b", "a"])
    assert str(err) == "conf/recipe/b.yaml, key 'builds.b.passes[0].name': unknown pass 'x' (valid choices: a, b)"
    err = StageError("export", "verify", "max abs err 0.5 > atol", "logs/export/m.log")
    assert str(err) == "export stage, verify failed: max abs err 0.5 > atol (full log: logs/export/m.log)"


def test_an_empty_list_of_choices_is_said_in_words():
    err = ConfigError("unknown model 'm'", key="builds.b.model", choices=[])
    assert str(err) == "key 'builds.b.model': unknown model 'm' (there are no valid choices yet)"
