"""Empty PUT, then a PUT with a body, on one pooled connection, through aws-cli's own botocore.

botocore sends `Expect: 100-continue` on every PUT; an empty PUT gets its final answer without
`100 Continue`, and an unpatched botocore then misparses the next response on that connection
(boto/botocore#3755). Run with the Python interpreter of the aws-cli under test.
Usage: empty_then_data.py ENDPOINT ACCESS_KEY SECRET_KEY REGION BUCKET
"""
import sys

try:  # aws-cli v2 and recent v1 vendor botocore inside the awscli package
    from awscli.botocore import session as botocore_session
    from awscli.botocore.config import Config
except ImportError:
    from botocore import session as botocore_session
    from botocore.config import Config

endpoint, access_key, secret_key, region, bucket = sys.argv[1:6]
client = botocore_session.get_session().create_client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access_key,
    aws_secret_access_key=secret_key,
    region_name=region,
    config=Config(
        max_pool_connections=1,
        retries={"max_attempts": 1},
        read_timeout=20,
        s3={"addressing_style": "path"},
    ),
)
client.create_bucket(Bucket=bucket)
for i in range(3):
    client.put_object(Bucket=bucket, Key=f"empty-{i}", Body=b"")
    body = bytes([i]) * 100_000
    answer = client.put_object(Bucket=bucket, Key=f"data-{i}", Body=body)
    assert "ETag" in answer, answer
    got = client.get_object(Bucket=bucket, Key=f"data-{i}")["Body"].read()
    assert got == body, f"data-{i}: {len(got)} bytes back"
print("ok")
