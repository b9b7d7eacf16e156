"""CPU facts: one helper (runtime/cpu.py) for the report, the device validator and benchmarks."""
from __future__ import annotations

import sys

from edge_albert.runtime.cpu import cpu_facts, isa_class

XEON = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse4_2 avx avx2"
        " fma avx512f avx512bw avx512_vnni amx_int8 avx512_bf16\n")
EPYC = ("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n")
PI4 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd08\n"
PI5 = ("processor\t: 0\nFeatures\t: fp asimd fphp asimdhp asimddp\nCPU part\t: 0xd0b\n"
       "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n")


def test_cpu_classes_that_decide_int8_speed():
    xeon, epyc = cpu_facts(XEON), cpu_facts(EPYC)
    assert xeon["cpu"] == "Intel(R) Xeon(R) Processor" and xeon["isa"] == "amx"
    assert xeon["int8_dot_product"] and "avx512_vnni" in xeon["flags"]
    assert epyc["isa"] == "avx2" and not epyc["int8_dot_product"]
    assert epyc["flags"] == ["sse4_2", "avx", "avx2", "fma", "f16c"]
    pi4, pi5 = cpu_facts(PI4), cpu_facts(PI5)
    assert pi4["cpu"] == "Cortex-A72" and pi4["isa"] == "arm64" and not pi4["int8_dot_product"]
    assert pi5["cpu"] == "Cortex-A76" and pi5["isa"] == "arm64-dotprod"
    assert pi5["board"].startswith("Raspberry Pi 5") and pi5["int8_dot_product"]
    assert isa_class({"avx2", "avx512f", "avx512_vnni"}, "x86_64") == "avx512vnni"
    assert isa_class({"asimd", "asimddp", "i8mm"}, "aarch64") == "arm64-i8mm"


def test_every_benchmark_records_the_same_machine_facts():
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from _common import machine

    m = machine()
    here = cpu_facts()
    assert m["cpu"] == here["cpu"] and m["flags"] == here["flags"] and m["isa"] == here["isa"]
    assert m["cores"] >= 1 and "numpy" in m["versions"]
