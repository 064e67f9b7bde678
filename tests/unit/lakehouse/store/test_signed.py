"""Signature Version 4 as AWS documents it: its published examples, signed here alike."""

from __future__ import annotations

import time

import pytest

from lakehouse.settings import S3Config
from lakehouse.store.signed import EMPTY_SHA256, Answer, Listing, SignedRequests, canonical

# https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
EXAMPLE = S3Config(
    endpoint="https://s3.amazonaws.com",
    bucket="examplebucket",
    region="us-east-1",
    access_key="AKIAIOSFODNN7EXAMPLE",
    secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    url_style="vhost",
)
AT = time.strptime("20130524T000000Z", "%Y%m%dT%H%M%SZ")


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        ({"lifecycle": ""}, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        (
            {"max-keys": "2", "prefix": "J"},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
    ids=["get-bucket-lifecycle", "list-objects"],
)
def test_the_documented_examples_sign_alike(query: dict[str, str], signature: str) -> None:
    requests = SignedRequests(EXAMPLE)
    headers = requests.signature("GET", "/", canonical(query), EMPTY_SHA256, AT)
    assert headers["host"] == "examplebucket.s3.amazonaws.com"
    assert headers["x-amz-content-sha256"] == EMPTY_SHA256
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
    )


def test_path_style_puts_the_bucket_in_the_path() -> None:
    requests = SignedRequests(EXAMPLE.model_copy(update={"url_style": "path"}))
    assert (requests.host, requests.root) == ("s3.amazonaws.com", "/examplebucket/")


def test_the_query_is_sorted_and_escaped_once() -> None:
    assert canonical({"prefix": "a b/c+d", "list-type": "2"}) == "list-type=2&prefix=a%20b%2Fc%2Bd"


def test_an_error_answer_names_s3s_code_or_the_status() -> None:
    body = b"<?xml version='1.0'?><Error><Code>PreconditionFailed</Code></Error>"
    assert Answer(412, body, {}).code == "PreconditionFailed"
    assert Answer(404, b"", {}).code == "404"


def test_a_listing_page_reads_keys_prefixes_and_the_next_token() -> None:
    page = Listing(
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<IsTruncated>true</IsTruncated><Contents><Key>a/1</Key>"
        b"<LastModified>2026-12-06T12:21:59.000Z</LastModified></Contents>"
        b"<CommonPrefixes><Prefix>a/b/</Prefix></CommonPrefixes>"
        b"<NextContinuationToken>t+1</NextContinuationToken></ListBucketResult>"
    )
    assert [(key, modified.isoformat()) for key, modified in page.objects] == [
        ("a/1", "2026-12-06T12:21:59+00:00")
    ]
    assert (page.prefixes, page.next_token) == (["a/b/"], "t+1")
