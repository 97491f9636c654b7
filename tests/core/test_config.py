import pytest

from fvgen.presets import PipelineConf, load_preset, preset_names
from fvgen.core.config import with_overrides
from fvgen.core.errors import FvgenError


def test_presets_load():
    assert {"default", "cpu", "paper"} <= set(preset_names())
    for name in preset_names():
        conf = load_preset(name)
        assert isinstance(conf, PipelineConf) and conf.name == name
    paper = load_preset("paper")
    assert (paper.warp.width, paper.warp.height, paper.warp.frames) == (512, 320, 16)
    assert load_preset("cpu").fit.iterations < load_preset("default").fit.iterations


def test_unknown_keys_and_types_are_errors(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[fit]\niterationz = 3\n")
    with pytest.raises(FvgenError, match="unknown setting fit.iterationz"):
        load_preset(str(p))
    p.write_text("[fit]\niterations = 'many'\n")
    with pytest.raises(FvgenError, match="must be int"):
        load_preset(str(p))
    p.write_text("[fit\n")
    with pytest.raises(FvgenError, match="not valid TOML"):
        load_preset(str(p))
    with pytest.raises(FvgenError, match="unknown preset"):
        load_preset("nope")


def test_overrides_nested():
    conf = with_overrides(load_preset("cpu"), **{"fit.iterations": 7, "priors.backend": "dust3r"})
    assert conf.fit.iterations == 7 and conf.priors.backend == "dust3r"
    assert conf.fit.sh_degree == load_preset("cpu").fit.sh_degree


def test_cli_picks_the_preset_for_the_device():
    from fvgen.cli import resolve_conf

    assert resolve_conf(None, "cpu").name == "cpu"  # no GPU: the default preset's fit would take hours
    assert resolve_conf("default", "cpu").name == "default"  # an explicit choice wins
    assert resolve_conf("paper", "cpu").name == "paper"


def test_command_line_overrides_the_preset_only_where_given():
    from fvgen.cli import resolve_conf

    paper = load_preset("paper")
    assert resolve_conf("paper", "cpu", **{"warp.traj": None, "warp.frames": None}).warp == paper.warp
    conf = resolve_conf("paper", "cpu", **{"warp.traj": "spiral", "fit.iterations": 7})
    assert conf.warp.traj == "spiral" and conf.fit.iterations == 7 and conf.warp.frames == paper.warp.frames
    with pytest.raises(FvgenError, match="--frames must be at least 2"):
        resolve_conf("cpu", "cpu", **{"warp.frames": 1})


def test_float_and_optional_settings_are_type_checked(tmp_path):
    p = tmp_path / "bad.toml"
    for bad in ('"abc"', "true", "[1, 2]"):
        p.write_text(f"[fit]\nssim_lambda = {bad}\n")
        with pytest.raises(FvgenError, match="ssim_lambda must be a number"):
            load_preset(str(p))
    p.write_text("[fit]\nssim_lambda = 1\n")
    assert load_preset(str(p)).fit.ssim_lambda == 1.0
    p.write_text("[priors.sfm]\nmax_keypoints = 'many'\n")
    with pytest.raises(FvgenError, match="max_keypoints"):
        load_preset(str(p))
    p.write_text("[priors.sfm]\nmax_keypoints = 2048\n")
    assert load_preset(str(p)).priors.sfm.max_keypoints == 2048


def test_missing_required_fields_are_one_line_errors_naming_the_dotted_key():
    """A field without a default that the dict leaves out is a one-line FvgenError naming its dotted
    key (not the dataclass constructor's TypeError); fields with defaults, default factories or
    ``init=False`` may be left out; a misspelt key is reported as unknown, not as missing."""
    import dataclasses

    from fvgen.core.config import from_dict

    @dataclasses.dataclass(frozen=True)
    class Inner:
        size: int
        scale: float = 1.0

    @dataclasses.dataclass(frozen=True)
    class Outer:
        name: str
        inner: Inner
        tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)
        derived: int = dataclasses.field(init=False, default=0)

    assert from_dict(Outer, {"name": "a", "inner": {"size": 3}}) == Outer("a", Inner(3))
    for data, message in (({"inner": {"size": 3}}, "missing setting f.toml: name (it has no default)"),
                          ({"name": "a", "inner": {}}, "missing setting f.toml: inner.size (it has no default)"),
                          ({}, "missing setting f.toml: name, f.toml: inner (it has no default)"),
                          ({"name": "a", "inner": {"sise": 3}}, "unknown setting f.toml: inner.sise (known: size, scale)")):
        with pytest.raises(FvgenError) as e:
            from_dict(Outer, data, where="f.toml: ")
        assert str(e.value) == message


def test_parse_assignments_reads_toml_values_and_keeps_dotted_keys():
    from fvgen.core.config import parse_assignments

    got = parse_assignments(["fit.input_share=0.7", "propagation_iters=2", "verbose=true", 'matcher="sift"'])
    assert got == {"fit.input_share": 0.7, "propagation_iters": 2, "verbose": True, "matcher": "sift"}
    assert with_overrides(load_preset("cpu"), **parse_assignments(["fit.iterations=7"])).fit.iterations == 7
    for bad in ("iterations", "=3", "fit.iterations=seven"):
        with pytest.raises(FvgenError):
            parse_assignments([bad])
