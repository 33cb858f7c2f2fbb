#!/usr/bin/env bash
# Smoke test of a built training image on the CPU, the way SageMaker runs it (`docker run <image> train` with the
# channels mounted under /opt/ml), without a network. ci.yml runs it on every push; container.yml runs it before
# it pushes a release image.
#   1. a generated dataset at /opt/ml/input/data/train, 1 epoch: exit 0, the model bundle in /opt/ml/model,
#      metrics.json says 1 epoch, no failure file;
#   2. the same dataset without its validation images: exit 2 (bad input) and one line in /opt/ml/output/failure
#      naming the split, nothing in /opt/ml/model.
# usage: scripts/smoke_image.sh IMAGE
set -euo pipefail
image=${1:?usage: scripts/smoke_image.sh IMAGE}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# The container writes as root: clean up through it too.
trap 'docker run --rm --network none --entrypoint rm -v "$work:/w" "$image" -rf /w/ok /w/bad >/dev/null 2>&1; rm -rf "$work"' EXIT

fail() { echo "::error::smoke: $*" >&2; exit 1; }

# The image's own Python generates the dataset (yoloops.synth needs only numpy and Pillow, both in the image).
in_image() { docker run --rm --network none --entrypoint "$1" -v "$root/yoloops:/src/yoloops:ro" -v "$work:/w" \
    -w /src "$image" "${@:2}"; }

job() {  # job NAME: run the training job on $work/NAME's channels; prints the exit code
    local d="$work/$1" rc=0
    mkdir -p "$d/model" "$d/output" "$d/checkpoints"
    docker run --rm --network none --shm-size=1g \
        -v "$d/input:/opt/ml/input" -v "$d/model:/opt/ml/model" -v "$d/output:/opt/ml/output" \
        -v "$d/checkpoints:/opt/ml/checkpoints" "$image" train >"$d/log.txt" 2>&1 || rc=$?
    echo "$rc"
}

echo "image: $image ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}'))"
# Folders the runner writes into are made by the runner (what the container makes belongs to root).
mkdir -p "$work/ok/input/config" "$work/ok/input/data" "$work/bad"
in_image python -m yoloops.synth /w/ok/input/data/train --train 32 --val 16 --imgsz 64 --layout ultralytics
echo '{"model": "yoloops-tiny.yaml", "epochs": "1", "imgsz": "64", "batch": "16"}' \
    >"$work/ok/input/config/hyperparameters.json"

start=$(date +%s)
rc=$(job ok)
echo "1-epoch job: exit $rc in $(($(date +%s) - start)) s"
[ "$rc" = 0 ] || { tail -n 60 "$work/ok/log.txt"; fail "the 1-epoch job exited $rc"; }
for f in best.pt metrics.json results.csv args.yaml model.onnx model_openvino_model model.torchscript model.json \
    DEPLOY.md; do
    [ -e "$work/ok/model/$f" ] || fail "/opt/ml/model/$f is missing (has: $(find "$work/ok/model" -mindepth 1 -maxdepth 1 -printf '%f '))"
done
[ ! -e "$work/ok/output/failure" ] || fail "a successful job wrote a failure file: $(cat "$work/ok/output/failure")"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); assert m["epochs_run"] == 1, m["epochs_run"]' \
    "$work/ok/model/metrics.json" || fail "metrics.json does not say 1 epoch"
grep -q '^yoloops-metric epoch=1 ' "$work/ok/log.txt" || fail "no metric line for epoch 1 in the job's log"

# The broken copy: same YAML, no validation images.
in_image sh -c 'cp -r /w/ok/input /w/bad/input && rm -rf /w/bad/input/data/train/images/val/*'
rc=$(job bad)
echo "broken-dataset job: exit $rc"
[ "$rc" = 2 ] || { tail -n 30 "$work/bad/log.txt"; fail "the broken-dataset job exited $rc, expected 2 (bad input)"; }
[ -s "$work/bad/output/failure" ] || fail "the broken-dataset job wrote no /opt/ml/output/failure"
echo "failure file: $(cat "$work/bad/output/failure")"
grep -q "val" "$work/bad/output/failure" || fail "the failure line does not name the empty split"
[ -z "$(ls -A "$work/bad/model")" ] || fail "a failed job left files in /opt/ml/model: $(ls "$work/bad/model")"
echo "smoke: ok"
