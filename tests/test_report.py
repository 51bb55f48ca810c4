"""RESULTS.md sections that render saved benchmark JSON."""
import json


def test_ceiling_section_renders_the_gap_and_names_the_command(tmp_path):
    from slimfast import report

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
    from slimfast import report

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
