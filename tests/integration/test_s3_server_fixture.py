"""The S3-compatible server fixture answers the S3 protocol over a real socket."""

from __future__ import annotations

import boto3
import pytest

from tests.servers.s3server import S3Endpoint

pytestmark = pytest.mark.integration


def test_bucket_round_trip_through_boto3(s3_endpoint: S3Endpoint) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint.url,
        region_name=s3_endpoint.region,
        aws_access_key_id=s3_endpoint.access_key_id,
        aws_secret_access_key=s3_endpoint.secret_access_key,
    )
    assert s3_endpoint.url.startswith("http://127.0.0.1:")
    client.create_bucket(Bucket="fixture-probe")
    client.put_object(Bucket="fixture-probe", Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket="fixture-probe", Key="a/b.txt")["Body"].read() == b"hello"
