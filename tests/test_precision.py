"""Native bf16 decided by fact (seqtune.inference.precision), for each CPU kind this project
runs on, whichever CPU runs the tests:

    python -m pytest -q tests/test_precision.py

The CPU kinds are fake /proc/cpuinfo texts (flags as Linux prints them) and the matmul
measurement is a fake that counts its calls, so the verdicts, the cache and `precision: auto`
are checked for an AVX512-BF16 EPYC, an AVX512 Xeon without bf16 (where oneDNN says bf16
is supported and emulates it) and an AVX2-only CPU on any machine.
"""

from __future__ import annotations

import json

import pytest
import torch

from seqtune.inference import devices, generator, precision
from seqtune.pipeline import train

BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ht syscall nx lm pni ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2"
AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_vbmi"


def cpuinfo(model: str, flags: str, cores: int = 2) -> str:
    """/proc/cpuinfo's text: one block per core, each repeating the model name and flags."""
    return "\n\n".join(f"processor\t: {i}\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n"
                       for i in range(cores))


EPYC_BF16 = cpuinfo("AMD EPYC 9R14 96-Core Processor", f"{BASE} {AVX512} avx512_bf16")
XEON_NO_BF16 = cpuinfo("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", f"{BASE} {AVX512}")
AVX2_ONLY = cpuinfo("AMD EPYC 7R13 Processor", BASE)
XEON_AMX = cpuinfo("Intel(R) Xeon(R) Platinum 8488C", f"{BASE} {AVX512} avx512_bf16 amx_bf16 amx_tile amx_int8")
ARM = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n"


class FakeMeasure:
    """Stands in for measure_speedups: returns fixed fp32/bf16 speedups, counts its calls."""

    def __init__(self, train: float, decode: float):
        self.speedups = {"1024x576@576x1536": train, "32x576@576x1536": decode}
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return dict(self.speedups)


REAL_CPU_INFO = precision.cpu_info  # before any test replaces it


def never():
    raise AssertionError("measured where the flags alone decide")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache" / "precision.json"


def test_cpu_info_reads_the_first_cores_model_and_flags():
    cpu = precision.cpu_info(EPYC_BF16)
    assert cpu.model == "AMD EPYC 9R14 96-Core Processor"
    assert {"avx512f", "avx512_bf16", "avx2"} <= cpu.flags and "amx_bf16" not in cpu.flags
    # No x86 flags line (aarch64 prints `Features`; macOS has no /proc/cpuinfo): unreadable, not "none".
    assert precision.cpu_info(ARM).flags is None and precision.cpu_info("").flags is None


@pytest.mark.parametrize("text", [XEON_NO_BF16, AVX2_ONLY], ids=["xeon-avx512-no-bf16", "avx2-only"])
def test_no_bf16_flag_is_fp32_without_measuring(text, cache):
    v = precision.cpu_verdict(precision.cpu_info(text), cache=cache, measure=never)
    assert v.native is False and v.speedup is None
    assert "no avx512_bf16/amx_bf16" in v.reason and "emulated" in v.reason
    assert not cache.exists()  # nothing measured, nothing to cache


def test_bf16_flag_and_a_faster_matmul_is_native_measured_once(cache):
    cpu = precision.cpu_info(EPYC_BF16)
    fake = FakeMeasure(train=1.8, decode=1.4)
    v = precision.cpu_verdict(cpu, cache=cache, measure=fake)
    assert v.native is True and v.speedup == 1.4  # the shape where bf16 gains least
    assert v.reason.startswith("cpu has avx512_bf16; bf16 matmul measured 1.80x at 1024x576@576x1536, 1.40x")
    assert fake.calls == 1
    entry = json.loads(cache.read_text())[precision.cache_key(cpu)]
    assert entry["native"] is True and entry["speedup"] == 1.4 and entry["reason"] == v.reason
    # A second look (another stage, another process) reads the cache: no second measurement.
    again = precision.cpu_verdict(cpu, cache=cache, measure=never)
    assert again == v
    # --remeasure measures again and overwrites.
    assert precision.cpu_verdict(cpu, cache=cache, measure=fake, remeasure=True) == v and fake.calls == 2


def test_amx_flag_counts_as_bf16(cache):
    v = precision.cpu_verdict(precision.cpu_info(XEON_AMX), cache=cache, measure=FakeMeasure(3.0, 2.0))
    assert v.native is True and v.reason.startswith("cpu has avx512_bf16/amx_bf16;")


@pytest.mark.parametrize("train_x, decode_x", [(0.9, 1.5), (1.6, 1.05), (0.25, 0.4)])
def test_a_bf16_flag_is_not_enough_when_bf16_measures_no_faster(train_x, decode_x, cache):
    """bf16 must be >= MARGIN times as fast at every shape: a flag whose bf16 does not pay
    (or pays only at one shape, or within noise) keeps fp32."""
    v = precision.cpu_verdict(precision.cpu_info(EPYC_BF16), cache=cache, measure=FakeMeasure(train_x, decode_x))
    assert v.native is False and v.speedup == min(train_x, decode_x)
    assert "but bf16 matmul measured" in v.reason and v.reason.endswith(": fp32")


def test_unreadable_flags_are_measured(cache):
    fake = FakeMeasure(1.5, 1.3)
    v = precision.cpu_verdict(precision.cpu_info(ARM), cache=cache, measure=fake)
    assert v.native is True and v.reason.startswith("cpu flags unreadable;") and fake.calls == 1


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"%s": {"native": "yes"}}'])
def test_a_corrupt_cache_is_measured_again_and_rewritten(garbage, cache):
    cpu = precision.cpu_info(EPYC_BF16)
    cache.parent.mkdir(parents=True)
    cache.write_text(garbage.replace("%s", precision.cache_key(cpu)))
    fake = FakeMeasure(1.8, 1.4)
    assert precision.cpu_verdict(cpu, cache=cache, measure=fake).native is True and fake.calls == 1
    assert json.loads(cache.read_text())[precision.cache_key(cpu)]["native"] is True
    precision.cpu_verdict(cpu, cache=cache, measure=never)  # and is a good cache now


def test_the_cache_is_keyed_by_cpu_flags_and_torch(cache, monkeypatch):
    """One file may serve machines sharing a home folder: each keeps its own verdict, and a
    torch upgrade (other kernels) measures again."""
    epyc, amx = precision.cpu_info(EPYC_BF16), precision.cpu_info(XEON_AMX)
    precision.cpu_verdict(epyc, cache=cache, measure=FakeMeasure(1.8, 1.4))
    precision.cpu_verdict(amx, cache=cache, measure=FakeMeasure(0.8, 0.8))
    assert precision.cpu_verdict(epyc, cache=cache, measure=never).native is True
    assert precision.cpu_verdict(amx, cache=cache, measure=never).native is False
    assert len(json.loads(cache.read_text())) == 2
    monkeypatch.setattr(torch, "__version__", "99.0")
    fake = FakeMeasure(1.8, 1.4)
    precision.cpu_verdict(epyc, cache=cache, measure=fake)
    assert fake.calls == 1


def test_an_unwritable_cache_still_gives_the_verdict(tmp_path):
    (tmp_path / "file").write_text("")
    cache = tmp_path / "file" / "precision.json"  # its folder is a file: the write fails
    fake = FakeMeasure(1.8, 1.4)
    assert precision.cpu_verdict(precision.cpu_info(EPYC_BF16), cache=cache, measure=fake).native is True


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQTUNE_CACHE_DIR", str(tmp_path / "mine"))
    assert precision.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("SEQTUNE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert precision.cache_dir() == tmp_path / "xdg" / "seqtune"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert precision.cache_dir() == tmp_path / "home" / ".cache" / "seqtune"


def test_the_session_never_caches_in_the_users_home():
    """conftest points the cache at a session folder (subprocesses inherit it)."""
    from pathlib import Path

    assert not precision.cache_dir().is_relative_to(Path.home() / ".cache")


def test_measure_speedups_times_both_precisions():
    """The real measurement, at a tiny shape (on this CPU bf16 may be faster or slower), on
    one thread and leaving the caller's thread count as it was."""
    before = torch.get_num_threads()
    seen = []
    real = precision._speedup
    try:
        torch.set_num_threads(2)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(precision, "_speedup", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
            out = precision.measure_speedups(((8, 16, 16),), rounds=2, target_ms=0.5)
        assert torch.get_num_threads() == 2 and seen == [1]
    finally:
        torch.set_num_threads(before)
    assert list(out) == ["8x16@16x16"] and out["8x16@16x16"] > 0


def test_other_devices():
    assert precision.bf16_verdict("mps") == precision.Verdict(False, "mps: bf16 support is partial; fp32 is the safe choice")


def test_cuda_asks_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **kw: "Fake H100")
    v = precision.bf16_verdict("cuda")
    assert v.native is True and "is_bf16_supported() is True (Fake H100)" in v.reason


# ------------------------------------------- what `precision: auto` chooses on each CPU kind


@pytest.fixture
def cpu_kind(monkeypatch, tmp_path):
    """Make this machine's CPU look like `text`, with bf16 measuring `speedups` (default:
    1.8x/1.4x, as a native bf16 core would; it is called only where a flag is present)."""

    def make(text: str, speedups: tuple[float, float] = (1.8, 1.4)) -> FakeMeasure:
        fake, parsed = FakeMeasure(*speedups), REAL_CPU_INFO(text)
        monkeypatch.setattr(precision, "cpu_info", lambda text=None: parsed)
        monkeypatch.setattr(precision, "measure_speedups", fake)
        monkeypatch.setenv("SEQTUNE_CACHE_DIR", str(tmp_path / "kind-cache"))
        return fake

    return make


CPU = torch.device("cpu")


def test_auto_is_fp32_on_the_xeon_without_bf16(cpu_kind):
    fake = cpu_kind(XEON_NO_BF16)
    assert devices.resolve_precision("auto", CPU) == "fp32"
    assert devices.native_bf16(CPU) is False and train.use_bf16("auto", CPU) is False
    with pytest.raises(ValueError, match="no native bf16 .cpu flags have no avx512_bf16"):
        devices.resolve_precision("bf16", CPU)
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX .* no avx512_bf16/amx_bf16"):
        train.use_bf16("bf16", CPU)
    reason = devices.precision_reason("auto", "fp32", CPU)
    assert reason == "auto -> fp32: " + precision.bf16_verdict(CPU).reason and "emulated" in reason
    assert fake.calls == 0


def test_auto_is_bf16_on_the_epyc_with_bf16(cpu_kind):
    fake = cpu_kind(EPYC_BF16)
    assert devices.resolve_precision("auto", CPU) == "bf16"
    assert devices.resolve_precision("autocast", CPU) == "autocast"
    assert train.use_bf16("auto", CPU) is True and train.use_bf16("bf16", CPU) is True
    assert devices.precision_reason("auto", "bf16", CPU).startswith("auto -> bf16: cpu has avx512_bf16; bf16 matmul")
    assert devices.precision_reason("fp32", "fp32", CPU) == "fp32 asked"
    assert fake.calls == 1  # every look after the first reads the cache


def test_auto_is_fp32_on_avx2_only(cpu_kind):
    cpu_kind(AVX2_ONLY)
    assert devices.resolve_precision("auto", CPU) == "fp32" and train.use_bf16("auto", CPU) is False


def test_auto_is_fp32_where_the_flag_is_there_but_bf16_is_slower(cpu_kind):
    cpu_kind(EPYC_BF16, speedups=(0.26, 0.43))
    assert devices.resolve_precision("auto", CPU) == "fp32"


def test_the_generator_records_its_precision_and_why(cpu_kind, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cpu_kind(EPYC_BF16)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    gen = generator.Generator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, task="smiles2formula",
                               fmt="plain", max_new_tokens=2)
    assert gen.precision == "bf16" and gen.precision_reason.startswith("auto -> bf16: cpu has avx512_bf16")
    cpu_kind(XEON_NO_BF16)
    gen = generator.Generator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, task="smiles2formula",
                               fmt="plain", max_new_tokens=2)
    assert gen.precision == "fp32" and "no avx512_bf16/amx_bf16" in gen.precision_reason


def test_cli_prints_the_verdict(cpu_kind, capsys):
    cpu_kind(XEON_NO_BF16)
    precision._cli([])
    out = capsys.readouterr().out
    assert "Intel(R) Xeon(R) Platinum 8375C" in out and "native bf16: False (cpu flags have no avx512_bf16" in out
