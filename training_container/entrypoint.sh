#!/bin/sh
# The image's entrypoint. SageMaker starts `docker run <image> train`: "train" (or nothing) runs the training
# job; anything else is run as a command after the same CUDA setup (e.g. a probe: entrypoint.sh python -m ...).
#
# CUDA forward compatibility. torch's CUDA 13.0 build needs a driver >= 580. The image carries NVIDIA's
# cuda-compat-13-0 package (the 580-branch user-mode driver, /usr/local/cuda/compat) for data-center GPUs on an
# older driver branch. It is put first on the library path only when the host's kernel driver is OLDER than it:
# on a newer driver the compat libcuda must not load (CUDA error 803). The NVIDIA Container Toolkit stopped doing
# this itself in 1.17.4, so the image does, as AWS asks of bring-your-own containers
# (https://docs.aws.amazon.com/sagemaker/latest/dg/container-nvidia-compliance.html).
# YOLOOPS_CUDA_COMPAT tells the job's start-up log what was chosen. (The two paths can be moved for tests.)
set -eu
compat=${YOLOOPS_CUDA_COMPAT_DIR:-/usr/local/cuda/compat}
driver_file=${YOLOOPS_NVIDIA_VERSION_FILE:-/proc/driver/nvidia/version}
YOLOOPS_CUDA_COMPAT="not used: no NVIDIA driver"
if [ -r "$driver_file" ]; then
    # "NVRM version: NVIDIA UNIX [Open ]Kernel Module [for x86_64]  580.95.05  ..." -> 580.95.05
    host=$(sed -n 's/^NVRM.*[[:space:]]\([0-9]\{3,\}\.[0-9][0-9.]*\)[[:space:]].*$/\1/p' "$driver_file" | head -n 1)
    shipped=$(readlink "$compat/libcuda.so.1" 2>/dev/null | sed 's/^libcuda\.so\.//') || shipped=""
    if [ -z "$host" ] || [ -z "$shipped" ]; then
        YOLOOPS_CUDA_COMPAT="not used: driver version '${host}', cuda-compat '${shipped}'"
    elif [ "$host" != "$shipped" ] && [ "$(printf '%s\n%s\n' "$host" "$shipped" | sort -V | head -n 1)" = "$host" ]; then
        LD_LIBRARY_PATH="$compat${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export LD_LIBRARY_PATH
        YOLOOPS_CUDA_COMPAT="used: cuda-compat $shipped on host driver $host"
    else
        YOLOOPS_CUDA_COMPAT="not used: host driver $host >= cuda-compat $shipped"
    fi
fi
export YOLOOPS_CUDA_COMPAT

if [ "$#" -eq 0 ] || [ "$1" = "train" ]; then
    exec python /opt/ml/code/train.py
fi
exec "$@"
