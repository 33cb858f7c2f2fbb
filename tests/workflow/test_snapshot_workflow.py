"""A run trains exactly the objects it validated (issue 18, item 4), on the real ASL and handlers."""

from __future__ import annotations

import json

from yoloops.local import complete

GOOD = {"mAP50": 0.81, "mAP50-95": 0.62, "precision": 0.8, "recall": 0.75}


def test_an_unversioned_run_trains_its_manifest_never_a_version_folder(wf):
    files = sorted(p for p in wf.dataset_dir.rglob("*") if p.is_file())
    for path in files:  # the unversioned upload, and a version folder beside it under the same prefix
        rel = path.relative_to(wf.dataset_dir).as_posix()
        wf.s3.upload_file(str(path), wf.bucket, f"datasets/shapes/{rel}")
        wf.s3.upload_file(str(path), wf.bucket, f"datasets/shapes/v9/{rel}")
    wf.s3.put_object(Bucket=wf.bucket, Key="datasets/shapes/v8.zip", Body=b"PK another version")
    wf.training.then(complete(GOOD))
    request = {"dataset": {"name": "shapes", "version": "c0ffee00", "format": "dir", "location": "datasets/shapes/"},
               "trigger": {"source": "manual", "ref": "tests/workflow"}}
    arn = wf.start("shapes", "c0ffee00", request=request)
    assert wf.wait(arn)["status"] == "SUCCEEDED", wf.history(arn)[-3:]
    run_id = wf.run_id("shapes", "c0ffee00")

    [job] = wf.training.requests
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert channels["train"]["S3DataType"] == "ManifestFile"
    assert channels["train"]["S3Uri"] == f"s3://{wf.bucket}/runs/{run_id}/input/train.manifest"
    assert channels["validated"]["S3Uri"] == f"s3://{wf.bucket}/runs/{run_id}/input/validated/"
    manifest = json.loads(wf.s3.get_object(Bucket=wf.bucket, Key=f"runs/{run_id}/input/train.manifest")["Body"].read())
    assert manifest[0] == {"prefix": f"s3://{wf.bucket}/datasets/shapes/"}
    assert sorted(manifest[1:]) == sorted(p.relative_to(wf.dataset_dir).as_posix() for p in files)
    listing = json.loads(wf.s3.get_object(Bucket=wf.bucket,
                                          Key=f"runs/{run_id}/input/validated/listing.json")["Body"].read())
    assert sorted(f["path"] for f in listing["files"]) == sorted(manifest[1:])
