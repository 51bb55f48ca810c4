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
