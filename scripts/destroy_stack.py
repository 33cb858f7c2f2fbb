"""`make destroy ENV=dev|prod`: delete a yoloops stack AND what it retains on purpose.

The artifacts bucket, its access-log bucket, the runs table and the ECR repository have DeletionPolicy
RetainExceptOnCreate, so `sam delete` leaves them behind (data survives an accidental delete). This
removes them too: it reads their physical ids from the stack, empties both versioned buckets (every
version and delete marker), runs `sam delete`, then deletes the retained resources. Irreversible: it asks
for the stack name to be typed unless --yes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import boto3

RETAINED = ("ArtifactsBucket", "AccessLogsBucket", "RunsTable", "TrainingImageRepository")


def physical_ids(cfn, stack: str) -> dict[str, str]:
    found = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            if r["LogicalResourceId"] in RETAINED and r.get("PhysicalResourceId"):
                found[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    return found


def empty_bucket(s3, bucket: str) -> int:
    """Delete every object version and delete marker (a versioned bucket is not empty otherwise)."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
            deleted += len(keys[i:i + 1000])
    return deleted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--config-env", required=True)
    parser.add_argument("--sam", default="sam")
    parser.add_argument("--yes", action="store_true")
    args = parser.parse_args(argv)
    if not args.yes and input(f"Type the stack name to delete {args.stack} and ALL its data: ") != args.stack:
        print("not confirmed; nothing deleted")
        return 1
    session = boto3.session.Session(region_name=args.region)
    ids = physical_ids(session.client("cloudformation"), args.stack)
    s3 = session.client("s3")
    for logical in ("ArtifactsBucket", "AccessLogsBucket"):
        if logical in ids:
            print(f"emptying s3://{ids[logical]}: {empty_bucket(s3, ids[logical])} versions deleted")
    subprocess.run([args.sam, "delete", "--stack-name", args.stack, "--region", args.region,
                    "--config-env", args.config_env, "--no-prompts"], check=True)
    for logical in ("ArtifactsBucket", "AccessLogsBucket"):
        if logical in ids:
            empty_bucket(s3, ids[logical])  # log deliveries that landed meanwhile
            s3.delete_bucket(Bucket=ids[logical])
            print(f"deleted bucket {ids[logical]}")
    if "RunsTable" in ids:
        session.client("dynamodb").delete_table(TableName=ids["RunsTable"])
        print(f"deleted table {ids['RunsTable']}")
    if "TrainingImageRepository" in ids:
        session.client("ecr").delete_repository(repositoryName=ids["TrainingImageRepository"], force=True)
        print(f"deleted ECR repository {ids['TrainingImageRepository']} and its images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
