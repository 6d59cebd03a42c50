"""mdnet-pretrain command line: errors are reported, not crashed through."""
from pretrain.cli import build_parser, main


def _main(*argv):
    return main(build_parser().parse_args([str(a) for a in argv]))


def test_config_errors_exit_2(tmp_path, capsys):
    assert _main("--out", tmp_path / "r") == 2
    assert "--config is required" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lrr: 1}\n")
    assert _main("--config", bad, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "unknown key 'lrr'" in err and "valid keys" in err
    assert _main("--config", bad, "--out", tmp_path / "r", "--set", "optim=1") == 2


def test_resume_without_checkpoint_exit_2(tmp_path, capsys, synth_root, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [synth_root])
    assert _main("--config", cfg, "--out", tmp_path / "r", "--resume") == 2
    assert "cannot resume" in capsys.readouterr().err


def test_missing_data_root_exit_2(tmp_path, capsys, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [tmp_path / "nowhere"])
    assert _main("--config", cfg, "--out", tmp_path / "r") == 2
    assert "nowhere" in capsys.readouterr().err


def test_help_lists_config_keys():
    text = build_parser().format_help()
    assert "mining.pool" in text and "optim.lr_scaling" in text
    assert "model.mode = 'exact'" in text and "RoIAlign" in text and "model.max_region = 1024" in text
