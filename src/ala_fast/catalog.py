"""Hardware, model, framework and precision descriptors with alias resolution.

This module is data: numbers from vendor data sheets and model configs. Peak compute is dense
(no sparsity) per device, in TFLOP/s; memory bandwidth in TB/s; memory in GB. Unknown names are
allowed everywhere: ``resolve_*`` returns None and the caller falls back (and says so).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Hardware:
    name: str
    fp16_tflops: float
    fp8_tflops: float  # equals fp16_tflops where the device has no fp8 tensor path
    mem_bw_tbs: float
    mem_gb: float
    aliases: tuple[str, ...] = ()
    vendor_hint: str = ""  # set on devices described from their measurements (device_inference)

    @property
    def vendor(self) -> str:
        return self.vendor_hint or VENDOR_OF_PREFIX.get(self.name[:2].upper(), "other")


@dataclass(frozen=True)
class Model:
    name: str
    params_b: float  # total parameters, billions
    active_b: float  # parameters touched per token (differs from params_b for MoE)
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    aliases: tuple[str, ...] = ()


HARDWARE: tuple[Hardware, ...] = (
    Hardware("A100", 312, 312, 2.039, 80, ("A100-SXM4-80GB", "A100 SXM", "A100 80GB", "Nvidia A100 GPU", "A100-SXM4")),
    Hardware("A100-40GB", 312, 312, 1.555, 40, ("A100 40GB", "A100-SXM4-40GB")),
    Hardware("A10G", 70, 70, 0.6, 24, ("A10", "A10G")),
    Hardware("L4", 121, 242, 0.3, 24, ()),
    Hardware("L40", 181, 362, 0.864, 48, ()),
    Hardware("L40S", 362, 733, 0.864, 48, ()),
    Hardware("V100", 125, 125, 0.9, 32, ("V100-SXM2-32GB", "Tesla V100")),
    Hardware("H100-SXM", 989, 1979, 3.35, 80, ("H100", "H100 80GB HBM3", "H100 SXM", "H100-SXM5", "Nvidia H100 GPU", "H100 SXM5 80GB")),
    Hardware("H100-PCIe", 756, 1513, 2.0, 80, ("H100 PCIe",)),
    Hardware("H100-NVL", 835, 1671, 3.9, 94, ("H100 NVL",)),
    Hardware("H200", 989, 1979, 4.8, 141, ("H200 141GB HBM3", "H200 SXM", "H200 141GB HBM3e", "H200-SXM")),
    Hardware("GH200", 989, 1979, 4.0, 96, ("GH200 120GB", "Nvidia GH200 GPU", "GH200 96GB", "Grace Hopper")),
    Hardware("B200", 2250, 4500, 8.0, 180, ("B200 180GB", "DGX B200")),
    Hardware("GB200", 2500, 5000, 8.0, 186, ()),
    Hardware("MI250", 362, 362, 3.2, 128, ("AMD MI250 GPU", "MI250X", "Instinct MI250")),
    Hardware("MI300X", 1307, 2615, 5.3, 192, ("AMD MI300X GPU", "Instinct MI300X")),
    Hardware("MI325X", 1307, 2615, 6.0, 256, ("Instinct MI325X",)),
    Hardware("MI355X", 2500, 5000, 8.0, 288, ("Instinct MI355X",)),
    Hardware("Gaudi2", 432, 865, 2.46, 96, ("Habana Gaudi2", "HL-225", "Intel Gaudi2")),
    Hardware("Gaudi3", 1835, 1835, 3.7, 128, ("Intel Gaudi3",)),
    Hardware("Max1550", 838, 838, 3.28, 128, ("Intel Max 1550", "Intel PVC GPU", "PVC", "Ponte Vecchio", "Data Center GPU Max 1550")),
    Hardware("SN40L", 638, 638, 1.6, 64, ("SambaNova SN40L",)),
    # other common accelerators, so that tables from other sources resolve (a device the
    # catalog does not know is taken to be FALLBACK_HARDWARE)
    Hardware("T4", 65, 65, 0.32, 16, ("Tesla T4", "T4 16GB")),
    Hardware("A30", 165, 165, 0.933, 24, ("A30 24GB",)),
    Hardware("A40", 150, 150, 0.696, 48, ("A40 48GB",)),
    Hardware("RTX-A6000", 155, 155, 0.768, 48, ("RTX A6000", "A6000")),
    Hardware("RTX-6000-Ada", 182, 364, 0.96, 48, ("RTX 6000 Ada", "RTX 6000 Ada Generation")),
    Hardware("RTX-4090", 165, 330, 1.008, 24, ("GeForce RTX 4090", "4090")),
    Hardware("RTX-3090", 71, 71, 0.936, 24, ("GeForce RTX 3090", "3090")),
    Hardware("L20", 119.5, 239, 0.864, 48, ()),
    Hardware("A800", 312, 312, 2.039, 80, ("A800-SXM4-80GB", "A800 SXM", "A800 80GB")),
    Hardware("H800", 989, 1979, 3.35, 80, ("H800 SXM", "H800 80GB HBM3", "H800-SXM5")),
    Hardware("H20", 148, 296, 4.0, 96, ("H20 96GB",)),
    Hardware("GH200-144GB", 989, 1979, 4.9, 144, ("GH200 144GB", "GH200 144GB HBM3e")),
    Hardware("B100", 1750, 3500, 8.0, 192, ()),
    Hardware("B300", 2250, 4500, 8.0, 288, ("B300 288GB", "DGX B300", "Blackwell Ultra")),
    Hardware("GB300", 2500, 5000, 8.0, 288, ()),
    Hardware("H200-NVL", 835, 1671, 4.8, 141, ("H200 NVL",)),
    Hardware("RTX-5090", 209.5, 419, 1.792, 32, ("GeForce RTX 5090", "5090")),
    Hardware("MI350X", 2307, 4614, 8.0, 288, ("Instinct MI350X",)),
    Hardware("MI100", 184.6, 184.6, 1.23, 32, ("Instinct MI100",)),
    Hardware("MI210", 181, 181, 1.6, 64, ("Instinct MI210",)),
    Hardware("MI300A", 980.6, 1961, 5.3, 128, ("Instinct MI300A",)),
    Hardware("TPU-v4", 275, 275, 1.2, 32, ("TPU v4",)),
    Hardware("TPU-v5e", 197, 197, 0.819, 16, ("TPU v5e", "TPU v5 lite", "v5litepod")),
    Hardware("TPU-v5p", 459, 459, 2.765, 95, ("TPU v5p",)),
    Hardware("TPU-v6e", 918, 918, 1.64, 32, ("TPU v6e", "Trillium")),
    Hardware("Inferentia2", 190, 190, 0.82, 32, ("AWS Inferentia2", "inf2")),
    Hardware("Trainium2", 667, 1299, 2.9, 96, ("AWS Trainium2", "trn2")),
)

#: what an accelerator the catalog does not know is taken to be: the median of the 22 devices
#: the catalog held when the shared data was first modelled (A10G to GB200), fixed here so that
#: adding entries does not move the predictions for unknown names
FALLBACK_HARDWARE = Hardware("unknown", 795.5, 1189.0, 3.24, 95.0)

@dataclass(frozen=True)
class Interconnect:
    """How a device's peers exchange the tensor-parallel all-reduce, per device and per
    direction (data-sheet figures; a bidirectional total is halved): ``fast_gbs`` GB/s among up
    to ``fast_group`` devices (NVLink, Infinity Fabric, on-chip RoCE, Xe Link, ICI, a bridge),
    and ``slow_gbs`` beyond it (the host PCIe link, or the scale-out NIC for devices whose
    fast group fills a server). A PCIe-only card has fast_gbs == slow_gbs."""

    fast_gbs: float
    fast_group: int
    slow_gbs: float

    def bandwidth_gbs(self, num_devices: int) -> float:
        """Per-device bandwidth of an all-reduce over ``num_devices`` devices (the slowest
        hop of the ring)."""
        return self.fast_gbs if num_devices <= self.fast_group else self.slow_gbs


_PCIE3, _PCIE4, _PCIE5 = 16.0, 32.0, 64.0  # x16 links, GB/s per direction
#: interconnect per catalog device name; a device not listed (and one the catalog does not
#: know) is taken to have FALLBACK_INTERCONNECT
INTERCONNECTS: dict[str, Interconnect] = {
    # NVIDIA: NVLink through NVSwitch in HGX / DGX servers (8), NVL72 racks (72), bridges (2-4)
    "A100": Interconnect(300, 8, 25), "A100-40GB": Interconnect(300, 8, 25),
    "A800": Interconnect(200, 8, 25), "V100": Interconnect(150, 8, 12.5),
    "H100-SXM": Interconnect(450, 8, 50), "H800": Interconnect(200, 8, 50),
    "H20": Interconnect(450, 8, 50), "H200": Interconnect(450, 8, 50),
    "H100-PCIe": Interconnect(300, 2, _PCIE5), "H100-NVL": Interconnect(300, 2, _PCIE5),
    "H200-NVL": Interconnect(450, 4, _PCIE5),
    # Grace Hopper systems join superchips by NVLink (NVL2, NVLink Switch) or by InfiniBand
    "GH200": Interconnect(450, 256, 50), "GH200-144GB": Interconnect(450, 256, 50),
    "B100": Interconnect(900, 8, 50), "B200": Interconnect(900, 8, 50),
    "B300": Interconnect(900, 8, 100), "GB200": Interconnect(900, 72, 50),
    "GB300": Interconnect(900, 72, 100),
    "A30": Interconnect(100, 2, _PCIE4), "A40": Interconnect(56, 2, _PCIE4),
    "RTX-A6000": Interconnect(56, 2, _PCIE4), "RTX-3090": Interconnect(56, 2, _PCIE4),
    "A10G": Interconnect(_PCIE4, 1, _PCIE4), "L4": Interconnect(_PCIE4, 1, _PCIE4),
    "L40": Interconnect(_PCIE4, 1, _PCIE4), "L40S": Interconnect(_PCIE4, 1, _PCIE4),
    "L20": Interconnect(_PCIE4, 1, _PCIE4), "RTX-6000-Ada": Interconnect(_PCIE4, 1, _PCIE4),
    "RTX-4090": Interconnect(_PCIE4, 1, _PCIE4), "RTX-5090": Interconnect(_PCIE5, 1, _PCIE5),
    "T4": Interconnect(_PCIE3, 1, _PCIE3),
    # AMD: Infinity Fabric links (MI250: per graphics die, in-package and across packages)
    "MI100": Interconnect(138, 4, _PCIE4), "MI210": Interconnect(150, 4, _PCIE4),
    "MI250": Interconnect(100, 8, 25), "MI300X": Interconnect(448, 8, 50),
    "MI300A": Interconnect(192, 4, 25), "MI325X": Interconnect(448, 8, 50),
    "MI350X": Interconnect(538, 8, 50), "MI355X": Interconnect(538, 8, 50),
    # Habana: 21 of the 24 on-chip RoCE ports join the 8 devices of a server; 3 scale out
    "Gaudi2": Interconnect(262, 8, 37.5), "Gaudi3": Interconnect(525, 8, 75),
    # Intel Data Center GPU Max: Xe Link among the GPUs of a node
    "Max1550": Interconnect(150, 8, 25),
    # Google ICI within a pod slice, AWS NeuronLink within an instance
    "TPU-v4": Interconnect(150, 4096, 25), "TPU-v5e": Interconnect(100, 256, 25),
    "TPU-v5p": Interconnect(300, 8960, 25), "TPU-v6e": Interconnect(224, 256, 25),
    "Inferentia2": Interconnect(96, 12, 12.5), "Trainium2": Interconnect(512, 16, 25),
}
#: a device without a listed interconnect (SN40L, whose peer links have no published figure,
#: and names the catalog does not know): a server of NVLink-class devices
FALLBACK_INTERCONNECT = Interconnect(300, 8, 50)

#: frameworks that split a model across devices by layers (pipeline) by default, so that no
#: all-reduce runs between devices (llama.cpp's --split-mode layer)
LAYER_SPLIT_FRAMEWORKS: frozenset[str] = frozenset({"llama.cpp"})


def interconnect_of(hardware: Hardware | None) -> Interconnect:
    if hardware is None:
        return FALLBACK_INTERCONNECT
    return INTERCONNECTS.get(hardware.name, FALLBACK_INTERCONNECT)

MODELS: tuple[Model, ...] = (
    Model("llama-7b", 6.74, 6.74, 32, 4096, 32, 32, 128, ("huggyllama/llama-7b", "LLaMA 7B")),
    Model("llama-2-7b", 6.74, 6.74, 32, 4096, 32, 32, 128, ("meta-llama/Llama-2-7b-hf", "LLaMA v2 7B", "Llama 2 7B", "llama2-7b")),
    Model("llama-2-13b", 13.0, 13.0, 40, 5120, 40, 40, 128, ("meta-llama/Llama-2-13b-hf", "LLaMA v2 13B", "llama2-13b")),
    Model("llama-2-70b", 69.0, 69.0, 80, 8192, 64, 8, 128, ("meta-llama/Llama-2-70b-hf", "LLaMA v2 70B", "llama2-70b")),
    Model("llama-3-8b", 8.03, 8.03, 32, 4096, 32, 8, 128, ("meta-llama/Meta-Llama-3-8B", "Meta-Llama-3-8B", "llama3-8b", "LLaMA v3 8B")),
    Model("llama-3-70b", 70.6, 70.6, 80, 8192, 64, 8, 128, ("meta-llama/Meta-Llama-3-70B", "Meta-Llama-3-70B", "llama3-70b", "LLaMA v3 70B")),
    Model("llama-3.1-8b", 8.03, 8.03, 32, 4096, 32, 8, 128, ("meta-llama/Llama-3.1-8B", "Meta-Llama-3.1-8B", "llama3.1-8b", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B")),
    Model("llama-3.1-70b", 70.6, 70.6, 80, 8192, 64, 8, 128, ("meta-llama/Llama-3.1-70B", "Meta-Llama-3.1-70B", "llama3.1-70b")),
    Model("llama-3.1-405b", 405.0, 405.0, 126, 16384, 128, 8, 128, ("meta-llama/Llama-3.1-405B", "Meta-Llama-3.1-405B", "llama3.1-405b")),
    Model("llama-3.2-1b", 1.24, 1.24, 16, 2048, 32, 8, 64, ("meta-llama/Llama-3.2-1B",)),
    Model("llama-3.2-3b", 3.21, 3.21, 28, 3072, 24, 8, 128, ("meta-llama/Llama-3.2-3B",)),
    Model("llama-3.3-70b", 70.6, 70.6, 80, 8192, 64, 8, 128, ("meta-llama/Llama-3.3-70B-Instruct", "llama3.3-70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B")),
    Model("mistral-7b", 7.24, 7.24, 32, 4096, 32, 8, 128, ("mistralai/Mistral-7B-v0.1", "Mistral 7B", "mistral-7b-v0.1", "mistral-7b-v0.2", "mistral-7b-v0.3")),
    Model("mixtral-8x7b", 46.7, 12.9, 32, 4096, 32, 8, 128, ("mistralai/Mixtral-8x7B-v0.1", "Mixtral 8x7B", "mixtral-8x7b-v0.1")),
    Model("mixtral-8x22b", 141.0, 39.0, 56, 6144, 48, 8, 128, ("mistralai/Mixtral-8x22B-v0.1", "Mixtral 8x22B")),
    Model("qwen1.5-7b", 7.72, 7.72, 32, 4096, 32, 32, 128, ("Qwen/Qwen1.5-7B",)),
    Model("qwen2-7b", 7.62, 7.62, 28, 3584, 28, 4, 128, ("Qwen/Qwen2-7B", "qwen2.5-7b", "Qwen/Qwen2.5-7B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")),
    Model("qwen2-72b", 72.7, 72.7, 80, 8192, 64, 8, 128, ("Qwen/Qwen2-72B", "qwen2.5-72b", "Qwen/Qwen2.5-72B")),
    Model("falcon-7b", 7.2, 7.2, 32, 4544, 71, 1, 64, ("tiiuae/falcon-7b", "Falcon 7B")),
    Model("falcon-40b", 41.8, 41.8, 60, 8192, 128, 8, 64, ("tiiuae/falcon-40b", "Falcon 40B")),
    Model("falcon-180b", 179.5, 179.5, 80, 14848, 232, 8, 64, ("tiiuae/falcon-180B", "Falcon 180B")),
    Model("gpt-j-6b", 6.05, 6.05, 28, 4096, 16, 16, 256, ("EleutherAI/gpt-j-6b", "GPTJ 6B", "GPT-J 6B", "gptj-6b")),
    Model("decilm-7b", 7.04, 7.04, 32, 4096, 32, 4, 128, ("Deci/DeciLM-7B",)),
    Model("aquila-7b", 7.0, 7.0, 32, 4096, 32, 32, 128, ("BAAI/Aquila-7B",)),
    Model("bloom-7b1", 7.07, 7.07, 30, 4096, 32, 32, 128, ("bigscience/bloom-7b1",)),
    Model("opt-6.7b", 6.66, 6.66, 32, 4096, 32, 32, 128, ("facebook/opt-6.7b",)),
    Model("gpt-oss-20b", 20.9, 3.6, 24, 2880, 64, 8, 64, ("openai/gpt-oss-20b",)),
    Model("gpt-oss-120b", 116.8, 5.1, 36, 2880, 64, 8, 64, ("openai/gpt-oss-120b",)),
    # MLA: the cached latent (512 + 64 rope dims) acts like one KV head of width 576
    Model("deepseek-v3", 671.0, 37.0, 61, 7168, 128, 1, 576, ("deepseek-ai/DeepSeek-V3", "deepseek-r1", "deepseek-ai/DeepSeek-R1")),
    # other common open models (architectures from their published configs)
    Model("codellama-7b", 6.74, 6.74, 32, 4096, 32, 32, 128, ("codellama/CodeLlama-7b-hf",)),
    Model("codellama-13b", 13.0, 13.0, 40, 5120, 40, 40, 128, ("codellama/CodeLlama-13b-hf",)),
    Model("codellama-34b", 33.7, 33.7, 48, 8192, 64, 8, 128, ("codellama/CodeLlama-34b-hf",)),
    Model("codellama-70b", 69.0, 69.0, 80, 8192, 64, 8, 128, ("codellama/CodeLlama-70b-hf",)),
    Model("llama-4-scout", 109.0, 17.0, 48, 5120, 40, 8, 128, ("meta-llama/Llama-4-Scout-17B-16E", "Llama-4-Scout-17B-16E-Instruct")),
    Model("llama-4-maverick", 400.0, 17.0, 48, 5120, 40, 8, 128, ("meta-llama/Llama-4-Maverick-17B-128E", "Llama-4-Maverick-17B-128E-Instruct")),
    Model("qwen2.5-0.5b", 0.49, 0.49, 24, 896, 14, 2, 64, ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2-0.5B")),
    Model("qwen2.5-1.5b", 1.54, 1.54, 28, 1536, 12, 2, 128, ("Qwen/Qwen2.5-1.5B", "Qwen/Qwen2-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")),
    Model("qwen2.5-3b", 3.09, 3.09, 36, 2048, 16, 2, 128, ("Qwen/Qwen2.5-3B",)),
    Model("qwen2.5-14b", 14.7, 14.7, 48, 5120, 40, 8, 128, ("Qwen/Qwen2.5-14B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")),
    Model("qwen2.5-32b", 32.5, 32.5, 64, 5120, 40, 8, 128, ("Qwen/Qwen2.5-32B", "Qwen/QwQ-32B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B")),
    Model("qwen3-0.6b", 0.6, 0.6, 28, 1024, 16, 8, 128, ("Qwen/Qwen3-0.6B",)),
    Model("qwen3-1.7b", 1.7, 1.7, 28, 2048, 16, 8, 128, ("Qwen/Qwen3-1.7B",)),
    Model("qwen3-4b", 4.0, 4.0, 36, 2560, 32, 8, 128, ("Qwen/Qwen3-4B",)),
    Model("qwen3-8b", 8.2, 8.2, 36, 4096, 32, 8, 128, ("Qwen/Qwen3-8B",)),
    Model("qwen3-14b", 14.8, 14.8, 40, 5120, 40, 8, 128, ("Qwen/Qwen3-14B",)),
    Model("qwen3-32b", 32.8, 32.8, 64, 5120, 64, 8, 128, ("Qwen/Qwen3-32B",)),
    Model("qwen3-30b-a3b", 30.5, 3.3, 48, 2048, 32, 4, 128, ("Qwen/Qwen3-30B-A3B",)),
    Model("qwen3-235b-a22b", 235.0, 22.0, 94, 4096, 64, 4, 128, ("Qwen/Qwen3-235B-A22B",)),
    Model("gemma-2-2b", 2.6, 2.6, 26, 2304, 8, 4, 256, ("google/gemma-2-2b",)),
    Model("gemma-2-9b", 9.24, 9.24, 42, 3584, 16, 8, 256, ("google/gemma-2-9b",)),
    Model("gemma-2-27b", 27.2, 27.2, 46, 4608, 32, 16, 128, ("google/gemma-2-27b",)),
    Model("gemma-3-12b", 12.2, 12.2, 48, 3840, 16, 8, 256, ("google/gemma-3-12b-it", "google/gemma-3-12b-pt")),
    Model("gemma-3-27b", 27.4, 27.4, 62, 5376, 32, 16, 128, ("google/gemma-3-27b-it", "google/gemma-3-27b-pt")),
    Model("phi-3-mini", 3.82, 3.82, 32, 3072, 32, 32, 96, ("microsoft/Phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-128k-instruct")),
    Model("phi-3-medium", 14.0, 14.0, 40, 5120, 40, 10, 128, ("microsoft/Phi-3-medium-4k-instruct", "microsoft/Phi-3-medium-128k-instruct")),
    Model("phi-4", 14.7, 14.7, 40, 5120, 40, 10, 128, ("microsoft/phi-4",)),
    Model("mistral-nemo-12b", 12.2, 12.2, 40, 5120, 32, 8, 128, ("mistralai/Mistral-Nemo-Instruct-2407", "mistralai/Mistral-Nemo-Base-2407", "Mistral NeMo")),
    Model("mistral-small-24b", 23.6, 23.6, 40, 5120, 32, 8, 128, ("mistralai/Mistral-Small-24B-Instruct-2501", "mistralai/Mistral-Small-24B-Base-2501")),
    Model("mistral-large-123b", 123.0, 123.0, 88, 12288, 96, 8, 128, ("mistralai/Mistral-Large-Instruct-2407", "mistralai/Mistral-Large-Instruct-2411")),
    Model("granite-3-2b", 2.53, 2.53, 40, 2048, 32, 8, 64, ("ibm-granite/granite-3.0-2b-instruct", "ibm-granite/granite-3.1-2b-instruct", "granite-3.0-2b", "granite-3.1-2b")),
    Model("granite-3-8b", 8.17, 8.17, 40, 4096, 32, 8, 128, ("ibm-granite/granite-3.0-8b-instruct", "ibm-granite/granite-3.1-8b-instruct", "granite-3.0-8b", "granite-3.1-8b")),
    Model("granite-20b-code", 20.1, 20.1, 52, 6144, 48, 1, 128, ("ibm-granite/granite-20b-code-instruct", "ibm-granite/granite-20b-code-base")),
    Model("granite-34b-code", 33.9, 33.9, 88, 6144, 48, 1, 128, ("ibm-granite/granite-34b-code-instruct", "ibm-granite/granite-34b-code-base")),
    Model("starcoder2-15b", 15.96, 15.96, 40, 6144, 48, 4, 128, ("bigcode/starcoder2-15b",)),
)

#: the vendor's software stack matters as much as the data sheet: A*/B*/G*/H*/L*/RTX*/T4/V* are
#: NVIDIA parts, MI* AMD, Max Intel GPUs (oneAPI), Gaudi Habana (SynapseAI: Intel-owned, but a
#: different architecture and software stack from Intel's GPUs), SN SambaNova, TPU Google,
#: Inferentia / Trainium AWS (Neuron)
VENDOR_OF_PREFIX = {"A1": "nvidia", "A10": "nvidia", "A3": "nvidia", "A4": "nvidia",
                    "A8": "nvidia", "B1": "nvidia", "B2": "nvidia", "B3": "nvidia", "GB": "nvidia",
                    "GH": "nvidia", "H1": "nvidia", "H2": "nvidia", "H8": "nvidia", "L2": "nvidia",
                    "L4": "nvidia", "RT": "nvidia", "T4": "nvidia", "V1": "nvidia", "MI": "amd",
                    "GA": "habana", "MA": "intel", "SN": "sambanova", "TP": "google",
                    "IN": "aws", "TR": "aws"}
#: words that name the vendor in a device name the catalog does not know ("NVIDIA Foo 48GB")
VENDOR_OF_WORD = {"nvidia": "nvidia", "geforce": "nvidia", "rtx": "nvidia", "tesla": "nvidia",
                  "quadro": "nvidia", "jetson": "nvidia", "amd": "amd", "radeon": "amd",
                  "instinct": "amd", "intel": "intel", "arc": "intel", "habana": "habana",
                  "gaudi": "habana", "sambanova": "sambanova", "tpu": "google",
                  "google": "google", "aws": "aws", "inferentia": "aws", "trainium": "aws"}
#: vendors with a one-hot feature column; the others (habana, sambanova: one device each in the
#: shared data, where a column would only repeat what the device's descriptors say) get none
VENDORS: tuple[str, ...] = ("nvidia", "amd", "intel")

#: frameworks known to the feature builder (one-hot); anything else maps to "other"
FRAMEWORKS: tuple[str, ...] = (
    "vllm", "trt-llm", "llama.cpp", "deepspeed-mii", "deepspeed", "sambaflow", "sglang", "tgi",
)
_FRAMEWORK_ALIASES = {
    "vllm": "vllm", "tensorrtllm": "trt-llm", "trtllm": "trt-llm", "tensorrt": "trt-llm",
    "llamacpp": "llama.cpp", "deepspeedmii": "deepspeed-mii", "mii": "deepspeed-mii",
    "deepspeed": "deepspeed", "sambaflow": "sambaflow", "sglang": "sglang",
    "tgi": "tgi", "textgenerationinference": "tgi",
}

#: bytes per weight for each precision name
PRECISION_BYTES = {
    "fp64": 8.0, "fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "fp6": 0.75,
    "int6": 0.75, "int5": 0.625, "int4": 0.5, "fp4": 0.5, "int3": 0.375, "int2": 0.25,
}
#: spellings of quantisation schemes, tried in order on the alphanumeric lower-case name when
#: no alias matches: weight bits decide (activations and KV cache are not part of the name)
_PRECISION_PATTERNS = (
    (re.compile(r"w(\d+)a\d+.*"), "int{}"),  # w4a16, w8a8: weight bits
    # gptq-int4, awq-int4, bnb-4bit, bnb-nf4
    (re.compile(r"(?:gptq|awq|bnb|hqq|marlin)(?:u?int|nf)?(\d+)(?:bits?)?"), "int{}"),
    (re.compile(r"i?q(\d)(k[sml]?|\d|xxs|xs|s|m|nl)?"), "int{}"),  # GGUF: q4_K_M, q8_0, iq4_xs
    (re.compile(r"(?:u?int|nf)(\d+).*"), "int{}"),  # int4-awq, uint4, nf4
    (re.compile(r"(\d+)bits?"), "int{}"),  # 4bit, 8-bit
    (re.compile(r"(?:mx|nv)?fp(\d+).*"), "fp{}"),  # fp8-dynamic, fp8e5m2, mxfp4, fp6
)
_PRECISION_ALIASES = {
    "mixed": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16", "bfloat16": "bf16",
    "float32": "fp32", "f32": "fp32", "single": "fp32", "tf32": "fp32", "float": "fp32",
    "float64": "fp64", "f64": "fp64", "double": "fp64",
    "float8": "fp8", "e4m3": "fp8", "e5m2": "fp8", "fp8e4m3": "fp8", "w8a8": "int8",
    "eetq": "int8", "awq": "int4", "gptq": "int4", "nvfp4": "fp4",
}

_DROP_TOKENS = {
    "nvidia", "amd", "intel", "habana", "sambanova", "gpu", "tensor", "core", "hbm2", "hbm2e",
    "hbm3", "hbm3e", "instinct", "hf", "instruct", "chat", "it", "base", "meta", "tesla",
    "geforce", "pt",
}


def name_key(name: str, keep_memory: bool = False) -> str:
    """Compact matching key: lower case, no organisation prefix, separators, memory suffixes
    (unless ``keep_memory``) or the common vendor / '-hf' / '-instruct' / '-chat' words."""
    s = str(name).strip().lower()
    if "/" in s:
        s = s.rsplit("/", 1)[1]
    tokens = [t for t in re.split(r"[^a-z0-9.]+", s) if t]
    out = []
    for t in tokens:
        t = t.strip(".")
        if not t or t in _DROP_TOKENS or (not keep_memory and re.fullmatch(r"\d+gb", t)):
            continue
        out.append(t)
    return "".join(out)


def _index(entries, keep_memory: bool = False) -> dict[str, object]:
    index: dict[str, object] = {}
    for entry in entries:
        for alias in (entry.name, *entry.aliases):
            index.setdefault(name_key(alias, keep_memory), entry)
    return index


_HW_INDEX = _index(HARDWARE)
#: spellings with their memory size ("A100-SXM4-40GB", "GH200 144GB") first find the entry of
#: that memory variant; without one, or without a variant of that size, the plain key decides
_HW_MEMORY_INDEX = _index(HARDWARE, keep_memory=True)
_MODEL_INDEX = _index(MODELS)
_DENSE_MODELS = tuple(m for m in MODELS if m.active_b == m.params_b)


@lru_cache(maxsize=4096)
def resolve_hardware(name: str) -> Hardware | None:
    hit = _HW_MEMORY_INDEX.get(name_key(name, keep_memory=True))
    return hit if hit is not None else _HW_INDEX.get(name_key(name))  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def resolve_model(name: str) -> Model | None:
    key = name_key(name)
    hit = _MODEL_INDEX.get(key)
    if hit is None:  # version suffixes such as "-v0.1" on names we know without them
        hit = _MODEL_INDEX.get(re.sub(r"v\d+(\.\d+)*$", "", key))
    return hit  # type: ignore[return-value]


TEMPLATES = 3  # catalog models whose architecture a model known by its size only takes
_SIZE_TOKEN = re.compile(r"(\d+(?:\.\d+)?)([bm])")
_ACTIVE_TOKEN = re.compile(r"a(\d+(?:\.\d+)?)b")


@lru_cache(maxsize=4096)
def model_from_name(name: str) -> Model | None:
    """Descriptors of a model the catalog does not know from the size its name states
    ("Yi-1.5-34B-Chat": 34B; "Qwen3-30B-A3B": 30B in all, 3B active; "pythia-410m"), with
    the median architecture (layers, hidden size, KV-cache width) of the TEMPLATES catalog
    dense models nearest in active size. None when the name states no size (or only an "8x7B"
    expert layout, whose total the name does not give)."""
    total = active = None
    s = str(name).strip().lower().rsplit("/", 1)[-1]
    for token in re.split(r"[^a-z0-9.]+", s):
        hit = _SIZE_TOKEN.fullmatch(token)
        if hit and total is None:
            total = float(hit.group(1)) / (1000.0 if hit.group(2) == "m" else 1.0)
        hit = _ACTIVE_TOKEN.fullmatch(token)
        if hit and active is None:
            active = float(hit.group(1))
    if not total or total <= 0:
        return None
    active = active if active and active < total else total
    near = sorted(_DENSE_MODELS, key=lambda m: (abs(math.log(m.params_b / active)), m.name))
    near = near[:TEMPLATES]
    layers, hidden, kv_dim = (int(statistics.median_low(v)) for v in zip(
        *((m.layers, m.hidden, m.kv_heads * m.head_dim) for m in near)))
    head_dim = min(128, kv_dim)
    return Model(name_key(name), total, active, layers, hidden, hidden // head_dim,
                 kv_dim // head_dim, head_dim)


def hardware_id(name: str) -> str:
    """Canonical hardware name, or the name's key when unknown (used to group folds)."""
    hw = resolve_hardware(name)
    return hw.name if hw else name_key(name)


def model_size_known(name: str) -> bool:
    """Whether a model's parameter counts are known: from the catalog or from its name
    (:func:`model_from_name`)."""
    return resolve_model(name) is not None or model_from_name(name) is not None


def model_id(name: str) -> str:
    m = resolve_model(name)
    return m.name if m else name_key(name)


def normalise_framework(name: str | None) -> str:
    if name is None:
        return "unknown"
    key = re.sub(r"[^a-z0-9]+", "", str(name).lower())
    return _FRAMEWORK_ALIASES.get(key, str(name).strip().lower())


def normalise_precision(name: str | None) -> str:
    if name is None:
        return "fp16"
    key = re.sub(r"[^a-z0-9]+", "", str(name).lower())
    if key in PRECISION_BYTES:
        return key
    if key in _PRECISION_ALIASES:
        return _PRECISION_ALIASES[key]
    for pattern, canonical in _PRECISION_PATTERNS:
        hit = pattern.fullmatch(key)
        if hit and canonical.format(hit.group(1)) in PRECISION_BYTES:
            return canonical.format(hit.group(1))
    return str(name).strip().lower()


@lru_cache(maxsize=65536)
def config_key(hardware: str, num_devices: int, framework: str, model: str, precision: str,
               batch_kind: str = "static") -> tuple:
    """Configuration identity after alias resolution ("H100" and "H100 80GB HBM3" match)."""
    return (hardware_id(hardware), int(num_devices), normalise_framework(framework),
            model_id(model), normalise_precision(precision), batch_kind)


def hardware_spelling(name: str) -> str:
    """A hardware name as written, up to case and spacing (one measured system per spelling)."""
    return " ".join(str(name).split()).casefold()


@lru_cache(maxsize=65536)
def config_identity(hardware: str, num_devices: int, framework: str, model: str, precision: str,
                    batch_kind: str = "static") -> tuple[tuple, str]:
    """``(config_key, hardware spelling)``: the resolved identity and the hardware as written.

    Two spellings of one catalog entry can be two measured systems (a table may list the same
    chip under a product and a code name, measured with different software stacks), so lookups
    of benchmarked curves try the spelling first and the resolved configuration second.
    """
    return (config_key(hardware, num_devices, framework, model, precision, batch_kind),
            hardware_spelling(hardware))


def vendor_from_name(name: str) -> str:
    """Vendor named by a word of a device name the catalog does not know, else "other"."""
    for word in re.split(r"[^a-z0-9]+", str(name).lower()):
        if word in VENDOR_OF_WORD:
            return VENDOR_OF_WORD[word]
    return "other"


def memory_from_name(name: str) -> float | None:
    """Memory size in GB written in a device name ("... 48GB", "X 96 GB"), if any."""
    hit = re.search(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*gb(?![a-z0-9])", str(name).lower())
    return float(hit.group(1)) if hit else None


@dataclass(frozen=True)
class InferredDevices:
    """Descriptors of devices the catalog does not know, keyed by :func:`hardware_id`, inferred
    from their own measurements (:mod:`ala_fast.device_inference`). The catalog always wins: an
    entry here is consulted only for names it does not resolve. Hashable (a cache key)."""

    entries: tuple[tuple[str, Hardware], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", dict(self.entries))
        object.__setattr__(self, "_hash", hash(self.entries))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def __reduce__(self):  # rebuilt on unpickling: string hashes differ between processes
        return (InferredDevices, (self.entries,))

    def __len__(self) -> int:
        return len(self.entries)

    def resolve(self, name: str) -> Hardware | None:
        """The catalog's entry for ``name``, else the inferred one, else None."""
        hw = resolve_hardware(name)
        if hw is None and self.entries:
            hw = self._lookup.get(name_key(name))  # type: ignore[attr-defined]
        return hw

    def to_json(self) -> list[dict]:
        return [{"id": key, "name": hw.name, "fp16_tflops": hw.fp16_tflops,
                 "fp8_tflops": hw.fp8_tflops, "mem_bw_tbs": hw.mem_bw_tbs, "mem_gb": hw.mem_gb,
                 "vendor": hw.vendor_hint} for key, hw in self.entries]

    @classmethod
    def from_json(cls, items: list[dict]) -> "InferredDevices":
        return cls(tuple((str(d["id"]), Hardware(str(d["name"]), float(d["fp16_tflops"]),
                                                  float(d["fp8_tflops"]), float(d["mem_bw_tbs"]),
                                                  float(d["mem_gb"]), vendor_hint=str(d["vendor"])))
                         for d in items))


NO_INFERRED_DEVICES = InferredDevices()
