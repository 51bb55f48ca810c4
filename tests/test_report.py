"""RESULTS.md sections that render saved benchmark JSON."""
import json


def test_ceiling_section_renders_the_gap_and_names_the_command(tmp_path):
    from slimfast.tools import report

    assert report.ceiling_section(tmp_path) == ["Not measured (`benchmarks/ceiling.py`)."]
    rows = [{"model": "m-a", "version": "2", "width": None, "images": 24, "ceiling_psnr": 29.24, "quantized_psnr": 28.97},
            {"model": "m-b", "version": "3", "width": 48, "images": 24, "ceiling_psnr": 27.5, "quantized_psnr": 26.0}]
    (tmp_path / "ceiling.json").write_text(json.dumps({"kodak": "k", "rows": rows}))
    lines = report.ceiling_section(tmp_path)
    text = "\n".join(lines)
    assert "24 Kodak images" in text and "--models m-a m-b" in text
    assert "| m-a v2 | - | 29.24 | 28.97 | -0.27 |" in lines
    assert "| m-b v3 | 48 | 27.50 | 26.00 | -1.50 |" in lines
    assert "linear transform" not in text

    (tmp_path / "ceiling.json").write_text(json.dumps({"kodak": "k", "rows": rows, "linear_bound": {"192": 37.24},
                                                       "linear_bound_train_images": 200}))
    text = "\n".join(report.ceiling_section(tmp_path))
    assert "--linear-bound 192 --out" in text and "192 per block 37.24 dB" in text and "200 training images" in text


def test_bf16_section_renders_the_costs_and_the_bench_times(monkeypatch):
    from slimfast.tools import report

    row = {"model": "m", "width": 96, "bpp_fp32": 0.5, "psnr_fp32": 30.0, "psnr_bf16_synthesis": 29.95,
           "bpp_bf16": 0.505, "psnr_bf16": 29.97, "max_abs_diff": 3, "images": 24}
    bench = {"models": [
        {"model": "m", "width": 96, "synthesis": "fp32", "enc_ms": 30.0, "dec_ms": 20.0},
        {"model": "m", "width": 96, "synthesis": "bf16", "enc_ms": 20.0, "dec_ms": 12.5,
         "baselines": {"webp": {"ratio": {"total": 1.25}}, "heic": {"ratio": {"dec": 1.5}}}}]}
    md = "\n".join(report.bf16_section({"rows": [row]}, bench))
    assert "| m | 96 | 0.500 / 30.00 | -0.050 dB | 3 | +1.00% | -0.030 dB | 30.0 / 20.0 | 20.0 / 12.5 | 1.25 | 1.50 |" in md
    monkeypatch.setattr(report, "bf16_unavailable", lambda: "no OpenVINO")
    assert report.bf16_section(None, bench)[0] == "Not measured: no OpenVINO."


def test_targets_come_from_the_data_file_and_show_their_distance(monkeypatch, tmp_path):
    from slimfast.tools import report

    targets = report.load_targets()
    assert targets and all({"issue", "required", "measure", "subject", "at_most"} <= set(t) for t in targets)
    monkeypatch.setattr(report, "_families", lambda: {"fam-h": "fasinet-h", "fam-s": "slim-fasinet-h", None: "fam-h"})

    class Default:
        name, default_width = "fam-h-q4", None

    monkeypatch.setattr("slimfast.zoo.get", lambda name, model_path=(): Default)
    ev = {"bd": [{"ref": "jpeg", "metric": "psnr", "test": "fam-h", "test_kind": "learned", "bd_rate": -43.0},
                 {"ref": "jpeg", "metric": "psnr", "test": "fam-s", "test_kind": "learned", "bd_rate": -40.0}],
          "curves": [{"points": [{"codec": "fam-s", "param": 48, "psnr": 26.5}, {"codec": "fam-h-q4", "param": None,
                                                                              "psnr": 32.7}]}]}
    be = {"models": [{"model": "fam-h-q4", "width": None, "dec_ms": 40.0,
                      "baselines": {"webp": {"ratio": {"total": 1.2, "dec": 9.0}}, "heic": {"ratio": {"dec": 2.5}}}},
                     {"model": "fam-s", "width": 48, "dec_ms": 10.0, "baselines": {"heic": {"ratio": {"dec": 0.8}}}}],
          "cold_start": {"model": "fam-h-q4", "decompress_ms": 300.0, "pillow_webp_ms": 100.0}}
    pick = [{"issue": 24, "required": True, "measure": "bd_rate", "subject": "default_family", "ref": "jpeg", "at_most": -42.0},
            {"issue": 24, "required": False, "measure": "bd_rate", "subject": "best_slimmable", "ref": "jpeg", "at_most": -42.0},
            {"issue": 23, "required": True, "measure": "speed_ratio", "subject": "default_point", "ref": "webp",
             "part": "total", "at_most": 1.5},
            {"issue": 23, "required": False, "measure": "speed_ratio", "subject": "every_point", "ref": "heic",
             "part": "dec", "at_most": 3.0},
            {"issue": 23, "required": False, "measure": "speed_ratio", "subject": "fastest_point_26db", "ref": "heic",
             "part": "dec", "at_most": 1.0},
            {"issue": 23, "required": True, "measure": "cold_start_ratio", "subject": "decompress", "ref": "pillow_webp",
             "at_most": 2.0},
            {"issue": 24, "required": False, "measure": "effort_gain", "subject": "highest_effort", "ref": "x",
             "at_most": -5.0}]
    monkeypatch.setattr(report, "ROOT", tmp_path)  # no effort benchmark there
    rows = report.targets_section(ev, be, pick)[2:9]
    assert rows[0].endswith("| -43.00% (fam-h) | -1.00% | yes |")
    assert rows[1].endswith("| -40.00% (fam-s) | +2.00% | no |")
    assert rows[2].endswith("| +1.20x (fam-h-q4) | -0.30x | yes |")
    assert rows[3].endswith("| +2.50x (fam-h-q4) | -0.50x | yes |")
    assert rows[4].endswith("| +0.80x (fam-s width 48) | -0.20x | yes |")
    assert rows[5].endswith("| +3.00x (fam-h-q4) | +1.00x | no |")
    assert "not measured" in rows[6]


def test_fuzz_section_renders_the_last_long_run(tmp_path):
    from slimfast.tools import report

    assert report.fuzz_section(tmp_path)[0].startswith("Not measured")
    run = {"cases": 50000, "bases": ["a", "b"], "max_pixels": 65536, "decoded": 900, "failures": 0,
           "outcomes": {"decoded": 900, "refused: truncated .sfi file": 49000, "refused: bad": 100},
           "seconds": {"p50": 0.0003, "p99": 0.02, "max": 0.05}, "traced_peak_bytes": {"p50": 2 ** 20, "max": 3 * 2 ** 20},
           "max_rss_bytes": 200 * 2 ** 20, "wall_seconds": 170.0}
    (tmp_path / "fuzz.json").write_text(json.dumps(run))
    text = "\n".join(report.fuzz_section(tmp_path))
    assert "50,000 checksum-valid mutants" in text and "**0 failures**" in text and "49,100 refused" in text
    assert "truncated .sfi file (49,000)" in text


def test_effort_targets_come_from_the_effort_benchmark(tmp_path):
    import json

    from slimfast.tools.report import _effort

    levels = {"0": [(0.2, 28.0), (0.6, 33.0), (1.4, 36.5)], "3": [(0.18, 28.0), (0.54, 33.0), (1.26, 36.5)]}
    models = {f"m{i}": {"levels": {e: {"bpp": pts[i][0], "psnr": pts[i][1]} for e, pts in levels.items()}}
              for i in range(3)}
    (tmp_path / "effort.json").write_text(json.dumps({"efforts": [0, 3], "models": models,
                                                      "compare": {"3": {"bd_rate_percent": -10.0}}}))
    gain = _effort(None, {"measure": "effort_gain", "subject": "highest_effort"}, tmp_path)
    assert gain[0] == -10.0 and "effort 3" in gain[1]
    avif = {"curves": [{"name": "avif", "points": [{"bpp": b, "psnr": q} for b, q in levels["0"]]}]}
    vs = _effort(avif, {"measure": "bd_rate", "subject": "highest_effort", "ref": "avif"}, tmp_path)
    assert abs(vs[0] - (-10.0)) < 0.01  # every point 10% fewer bits at the same quality
    assert _effort(None, {"measure": "effort_gain", "subject": "highest_effort"}, tmp_path / "none") is None


def test_recipe_section_renders_each_probe_against_the_first(tmp_path):
    from slimfast.tools.report import recipe_section

    assert recipe_section(tmp_path)[0].startswith("Not measured")
    rows = [{"label": "256x2", "bpp": 0.75, "psnr": 32.5, "j": 1.25, "j_vs_first_percent": 0.0},
            {"label": "384x1", "bpp": 0.74, "psnr": 32.6, "j": 1.2375, "j_vs_first_percent": -1.0}]
    (tmp_path / "recipe_probes.json").write_text(json.dumps({"command": "python benchmarks/compare_weights.py x",
                                                             "lambda": 0.013, "images": 12, "rows": rows}))
    text = "\n".join(recipe_section(tmp_path))
    assert "| 384x1 | 0.7400 | 32.600 | 1.23750 | -1.00% |" in text
    assert "12 whole validation images" in text and "`python benchmarks/compare_weights.py x`" in text


def test_coders_section_renders_each_point(tmp_path):
    from slimfast.tools.report import coders_section

    assert coders_section(tmp_path)[0].startswith("Not measured")
    rows = [{"model": "m", "width": None, "range_bytes": 1000.0, "rans_bytes": 1003.0, "change_percent": 0.3,
             "max_change_percent": 0.41}]
    (tmp_path / "coders.json").write_text(json.dumps({"command": "python benchmarks/coders.py", "images": 24,
                                                      "rows": rows}))
    assert "| m | - | 1000 | 1003 | +0.300% | +0.410% |" in coders_section(tmp_path)
