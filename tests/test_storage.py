"""int8 weight storage (slimfast.format.storage): bounded error, identical floats on both backends,
and files that still round-trip exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from slimfast.format import storage
from slimfast.models import SlimFasiNetL
from slimfast.models.weights import load_model, read_metadata, save_model


def test_pack_error_is_at_most_half_a_step_per_slice():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((16, 8, 3, 3)) * rng.uniform(0.01, 3, (16, 1, 1, 1))).astype(np.float32)
    w[3] = 0                                                  # an all-zero slice must not divide by zero
    q, scale = storage.pack(w)
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    back = storage.unpack(q, scale)
    err = np.abs(back - w).reshape(16, -1).max(axis=1)
    assert np.all(err <= scale * 0.5 * (1 + 1e-6))
    assert np.all(back[3] == 0)
    # the peak of each slice is represented exactly (up to float rounding of the scale)
    np.testing.assert_allclose(np.abs(back).reshape(16, -1).max(axis=1), np.abs(w).reshape(16, -1).max(axis=1), rtol=1e-6)


def test_unpack_state_drops_scales_and_keeps_the_rest():
    q, s = storage.pack(np.ones((4, 4, 8, 8), np.float32))
    out = storage.unpack_state({"a": q, "a" + storage.SCALE_SUFFIX: s, "b": np.arange(3)})
    assert set(out) == {"a", "b"} and out["a"].dtype == np.float32 and np.all(out["a"] == 1)


def test_frequency_tables_are_stored_as_uint16_and_read_back_exactly(slim_files):
    m, d = slim_files
    from safetensors.numpy import load_file

    ref = {k: v.numpy() for k, v in m.state_dict().items() if k.endswith(".freqs") and v.numel()}
    assert ref and all(v.dtype == np.int32 for v in ref.values())
    for st in ("fp16", "int8"):
        raw = load_file(str(d / f"{st}.safetensors"))
        assert all(raw[k].dtype == np.uint16 for k in ref), st
        torch_state = load_model(d / f"{st}.safetensors").state_dict()
        rw = pytest.importorskip("slimfast.format.weightfile")
        _, rt_state = rw.load(d / f"{st}.safetensors")
        for k, v in ref.items():
            assert torch_state[k].dtype == torch.int32 and np.array_equal(torch_state[k].numpy(), v), k
            assert rt_state[k].dtype == np.int32 and np.array_equal(rt_state[k], v), k


def test_narrow_table_refuses_what_uint16_cannot_hold():
    ok = np.array([[0, 65535, 1]], np.int32)
    assert storage.narrow_table("eb.freqs", ok).dtype == np.uint16
    assert storage.narrow_table("eb.freqs", np.array([[65536, 0]], np.int32)) is None
    assert storage.narrow_table("eb.freqs", np.array([[-1, 2]], np.int32)) is None
    assert storage.narrow_table("eb.lengths", ok) is None          # only frequency tables
    assert storage.narrow_table("eb.freqs", np.zeros((0, 0), np.int32)) is None


@pytest.fixture(scope="module")
def slim_files(tmp_path_factory):
    torch.manual_seed(0)
    m = SlimFasiNetL(widths=(192, 96)).eval()
    m.update()
    d = tmp_path_factory.mktemp("storage")
    for st in ("fp16", "int8"):
        save_model(m, d / f"{st}.safetensors", storage=st)
    return m, d


def test_int8_file_is_smaller_and_says_so(slim_files):
    m, d = slim_files
    assert read_metadata(d / "int8.safetensors")["storage"] == "int8"
    assert (d / "int8.safetensors").stat().st_size < 0.6 * (d / "fp16.safetensors").stat().st_size


def test_int8_weights_load_identically_in_torch_and_runtime(slim_files):
    m, d = slim_files
    a = load_model(d / "int8.safetensors").state_dict()
    rw = pytest.importorskip("slimfast.format.weightfile")
    pytest.importorskip("safetensors")
    _, b = rw.load(d / "int8.safetensors")
    assert set(a) == set(b)
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k]), k
    packed = [k for k, v in m.state_dict().items() if storage.packable(v.numpy())]
    assert packed, "nothing was packed"
    for k in packed:
        ref = m.state_dict()[k]
        assert (a[k] - ref).abs().max() <= ref.abs().max() / 254 * (1 + 1e-5)


def test_int8_model_codes_exactly_at_every_width(slim_files, sample_rgb):
    _, d = slim_files
    m = load_model(d / "int8.safetensors")
    x = torch.from_numpy(sample_rgb[:128, :192].transpose(2, 0, 1).copy()).float().div(255)[None]
    with torch.no_grad():
        for w in m.widths:
            sym = m.encode_symbols(x, w)
            strings = m.encode_strings(sym, w)
            back = m.decode_symbols(strings, tuple(sym[m.shape_key].shape[2:]), w)
            assert set(back) == set(sym)
            for k in sym:
                assert np.array_equal(back[k], sym[k]), (w, k)


@pytest.mark.parametrize("n,peak", [(1024, 4095), (1025, 2047), (3 * 7 * 7 * 13, 4095), (2048, 1)])
def test_intn_round_trips_every_value_exactly(n, peak):
    rng = np.random.default_rng(n)
    a = rng.integers(-peak - 1, peak + 1, n).astype(np.int16)
    a[:4] = [-peak - 1, peak, 0, -1]                          # both extremes, zero and the sign bit
    a = a.reshape((n,) if n % 13 else (3, 7, 7, 13))
    bits = int(peak).bit_length() + 1
    assert storage.int_bits(a) == bits
    assert storage.intn_packable("h_s_mean.int_w0", a)
    packed, header = storage.pack_intn(a)
    assert packed.dtype == np.uint8 and packed.size == (n * bits + 7) // 8 and header[0] == bits
    back = storage.unpack_intn(packed, header)
    assert back.dtype == np.int16 and back.shape == a.shape and np.array_equal(back, a)


def test_intn_packs_only_integer_weights_that_gain():
    ok = np.zeros((64, 32), np.int16)
    assert not storage.intn_packable("h_s_mean.int_b0", ok)                 # not a weight
    assert not storage.intn_packable("h_s_mean.int_w0", ok.astype(np.int32))
    assert not storage.intn_packable("h_s_mean.int_w0", np.full((64, 32), -32768, np.int16))  # needs 16 bits
    assert not storage.intn_packable("h_s_mean.int_w0", np.zeros(8, np.int16))  # too small to bother
    with pytest.raises(ValueError):
        storage.unpack_intn(np.zeros(6, np.uint8), np.array([13, 5, 5]))


def test_int8_hyperprior_file_keeps_the_integer_copy_exactly(tmp_path):
    from safetensors.numpy import load_file

    from slimfast.models import FasiNetH

    torch.manual_seed(0)
    m = FasiNetH().eval()
    m.update()
    save_model(m, tmp_path / "h8.safetensors", storage="int8")
    save_model(m, tmp_path / "h16.safetensors", storage="fp16")
    raw = load_file(str(tmp_path / "h8.safetensors"))
    ints = {k: v.numpy() for k, v in m.state_dict().items() if k.rsplit(".", 1)[-1].startswith("int_w")}
    assert ints and all(k + storage.INTN_SUFFIX in raw and k not in raw for k in ints)
    assert all(k in load_file(str(tmp_path / "h16.safetensors")) for k in ints)  # other storages: as before
    a = load_model(tmp_path / "h8.safetensors").state_dict()
    rw = pytest.importorskip("slimfast.format.weightfile")
    _, b = rw.load(tmp_path / "h8.safetensors")
    for k, v in ints.items():
        assert a[k].dtype == torch.int16 and np.array_equal(a[k].numpy(), v), k
        assert b[k].dtype == np.int16 and np.array_equal(b[k], v), k


@pytest.mark.parametrize("arch", ["fasinet-h", "slim-fasinet-h"])
def test_int8_file_stores_the_hyper_synthesis_once_and_codes_the_same(arch, tmp_path, sample_rgb):
    """An int8 file leaves out the float hyper-synthesis weights; loading rebuilds them from the
    integer copy (int_w * scale), and the file codes exactly like one that stores both."""
    from safetensors.numpy import load_file, save_file

    from slimfast.nn.layers import IntegerCopyMixin
    from slimfast.models import build

    torch.manual_seed(0)
    m = build(arch, {"widths": [192, 96]} if arch.startswith("slim") else {}).eval()
    m.update()
    save_model(m, tmp_path / "lean.safetensors", storage="int8")
    raw = load_file(str(tmp_path / "lean.safetensors"))
    derived = [f"{n}.{w}" for n, mod in m.named_modules() if isinstance(mod, IntegerCopyMixin)
               for w in mod.derivable_weights()]
    assert len(derived) >= 6 and not any(k in raw or k + storage.SCALE_SUFFIX in raw for k in derived)
    # the same file with the float copy stored (as slimfast <= 0.7.1 wrote it)
    full = dict(raw)
    for k in derived:
        full[k], full[k + storage.SCALE_SUFFIX] = storage.pack(m.state_dict()[k].numpy())
    save_file(full, str(tmp_path / "full.safetensors"), metadata=read_metadata(tmp_path / "lean.safetensors"))
    assert (tmp_path / "lean.safetensors").stat().st_size < (tmp_path / "full.safetensors").stat().st_size

    lean = load_model(tmp_path / "lean.safetensors")
    sd = lean.state_dict()
    for mod_name, mod in lean.named_modules():
        if isinstance(mod, IntegerCopyMixin):
            for i, (layer, key) in enumerate(zip(mod.integer_layers(), mod.derivable_weights())):
                w_int, scale, _ = mod.integer_params(i)
                axis = 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0
                shape = [1] * w_int.ndim
                shape[axis] = -1
                want = torch.from_numpy(w_int * scale.reshape(shape)).float()
                assert torch.equal(sd[f"{mod_name}.{key}"], want), key
                ref = m.state_dict()[f"{mod_name}.{key}"]
                assert (sd[f"{mod_name}.{key}"] - ref).abs().max() <= ref.abs().max() / 4095 * (1 + 1e-5)

    x = torch.from_numpy(sample_rgb[:128, :192].transpose(2, 0, 1).copy()).float().div(255)[None]
    other = load_model(tmp_path / "full.safetensors")
    with torch.no_grad():
        for w in getattr(lean, "widths", None) or [None]:
            assert lean.encode_strings(lean.encode_symbols(x, w), w) == other.encode_strings(other.encode_symbols(x, w), w)
    rt = pytest.importorskip("slimfast.runtime")
    if rt.available():
        r_lean, r_full = rt.load_model(tmp_path / "lean.safetensors"), rt.load_model(tmp_path / "full.safetensors")
        assert r_lean.compress(x.numpy()).strings == r_full.compress(x.numpy()).strings


def test_int8_file_keeps_float_weights_whose_integer_copy_is_stale(tmp_path):
    """A copy frozen before the weights moved on (training from frozen weights, no update())
    must not replace them on loading: those float weights stay in the file."""
    from safetensors.numpy import load_file

    from slimfast.models import FasiNetH

    torch.manual_seed(1)
    m = FasiNetH().eval()
    m.update()
    with torch.no_grad():
        m.h_s_mean.out.weight.mul_(1.5)  # moved on after freezing
    save_model(m, tmp_path / "stale.safetensors", storage="int8")
    raw = load_file(str(tmp_path / "stale.safetensors"))
    assert "h_s_mean.out.weight" in raw and "h_s_scale.out.weight" not in raw
    back = load_model(tmp_path / "stale.safetensors").state_dict()
    ref = m.state_dict()["h_s_mean.out.weight"]
    assert (back["h_s_mean.out.weight"] - ref).abs().max() <= ref.abs().max() / 254 * (1 + 1e-5)
    # and a file saved from a loaded lean file is lean again (the rebuilt weights requantize exactly)
    save_model(load_model(tmp_path / "stale.safetensors").eval(), tmp_path / "again.safetensors", storage="int8")
    assert "h_s_scale.out.weight" not in load_file(str(tmp_path / "again.safetensors"))
