"""Which GPU each SageMaker instance family has, and which GPUs the image's torch build has kernels for.

One table for three readers: tests/static/test_image.py (every InstanceType the template allows, and every row
of the shipped price table, is a CPU type or has a GPU this build runs on), the image build (`python
gpu_arch.py --check-torch` fails the build when the locked torch is not the build described here) and people
choosing an instance type. Stdlib only: the image copies it next to train.py; yoloops_core does not import it.

Kernels: a cubin built for sm_XY runs on a GPU of compute capability X.Z with Z >= Y (same major); PTX
(compute_XY) is JIT-compiled for any capability >= X.Y. torch 2.14.1's PyPI wheel for Linux (CUDA 13.0) carries
sm_75 sm_80 sm_86 sm_90 sm_100 sm_120 and no PTX (read from `torch._C._cuda_getArchFlags()` of that wheel): CUDA
13 dropped Volta (sm_70), so the V100 of ml.p3.* has no kernels.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

# The torch build the image installs (requirements.lock) and what it was compiled for.
TORCH_VERSION = "2.14.1"
TORCH_CUDA = "13.0"
TORCH_ARCH_LIST: tuple[str, ...] = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


# SageMaker instance family -> its GPU (AWS "Accelerated computing" instance pages; capabilities from NVIDIA's
# CUDA GPUs list). None = a CPU family. A family missing here fails the static test: add it before allowing it.
FAMILIES: dict[str, Gpu | None] = {
    "m5": None, "m6i": None, "m7i": None, "c5": None, "c6i": None, "c7i": None, "r5": None,
    "g4dn": Gpu("NVIDIA T4", (7, 5)),
    "g5": Gpu("NVIDIA A10G", (8, 6)),
    "g6": Gpu("NVIDIA L4", (8, 9)),
    "g6e": Gpu("NVIDIA L40S", (8, 9)),
    "p3": Gpu("NVIDIA V100", (7, 0)),
    "p3dn": Gpu("NVIDIA V100", (7, 0)),
    "p4d": Gpu("NVIDIA A100", (8, 0)),
    "p4de": Gpu("NVIDIA A100 80GB", (8, 0)),
    "p5": Gpu("NVIDIA H100", (9, 0)),
    "p5e": Gpu("NVIDIA H200", (9, 0)),
    "p5en": Gpu("NVIDIA H200", (9, 0)),
}

_TYPE_RX = re.compile(r"^ml\.([a-z0-9]+)\.[a-z0-9]+$")
_ARCH_RX = re.compile(r"^(sm|compute)_(\d+)(\d)$")


class UnknownFamily(KeyError):
    """An instance type whose family is not in FAMILIES."""


def family(instance_type: str) -> str:
    m = _TYPE_RX.match(instance_type)
    if not m:
        raise ValueError(f"not a SageMaker instance type: {instance_type!r} (expected ml.<family>.<size>)")
    return m.group(1)


def gpu_of(instance_type: str) -> Gpu | None:
    """The instance type's GPU, None for a CPU type; UnknownFamily when the table does not know the family."""
    fam = family(instance_type)
    if fam not in FAMILIES:
        raise UnknownFamily(f"{instance_type}: family {fam!r} is not in training_container/gpu_arch.py FAMILIES")
    return FAMILIES[fam]


def runs_on(capability: tuple[int, int], arch_list: tuple[str, ...] | list[str] = TORCH_ARCH_LIST) -> bool:
    """True when a build with `arch_list` has kernels for a GPU of `capability` (see the module docstring)."""
    major, minor = capability
    for arch in arch_list:
        m = _ARCH_RX.match(arch)
        if not m:
            continue
        kind, a_major, a_minor = m.group(1), int(m.group(2)), int(m.group(3))
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def supported(instance_type: str, arch_list: tuple[str, ...] | list[str] = TORCH_ARCH_LIST) -> bool:
    """A CPU type, or a GPU type whose GPU this torch build has kernels for."""
    gpu = gpu_of(instance_type)
    return gpu is None or runs_on(gpu.capability, arch_list)


def installed_torch_build() -> tuple[str, str | None, tuple[str, ...]]:
    """(version without local tag, CUDA version, compiled arch list) of the torch in this interpreter."""
    import torch

    flags = tuple(torch._C._cuda_getArchFlags().split()) if torch.version.cuda else ()
    return torch.__version__.split("+")[0], torch.version.cuda, flags


def check_torch() -> str:
    """Raise SystemExit naming the difference when the installed torch is not the build this table describes."""
    version, cuda, flags = installed_torch_build()
    expected = (TORCH_VERSION, TORCH_CUDA, TORCH_ARCH_LIST)
    if (version, cuda, flags) != expected:
        raise SystemExit(f"torch build {version} CUDA {cuda} arch {' '.join(flags) or '-'} differs from "
                         f"training_container/gpu_arch.py ({TORCH_VERSION} CUDA {TORCH_CUDA} arch "
                         f"{' '.join(TORCH_ARCH_LIST)}): update the table and the instance types that follow it")
    return f"torch {version} CUDA {cuda}: {' '.join(flags)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-torch", action="store_true", help="fail unless the installed torch matches")
    parser.add_argument("instance_types", nargs="*", help="print each type's GPU and whether the build runs on it")
    args = parser.parse_args(argv)
    if args.check_torch:
        print(check_torch())
    bad = 0
    for itype in args.instance_types:
        gpu = gpu_of(itype)
        ok = supported(itype)
        bad += not ok
        print(f"{itype}: {'CPU' if gpu is None else f'{gpu.name} {gpu.sm}'} -> "
              f"{'ok' if ok else 'NO KERNELS in this torch build'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
