"""The object store: the S3 client (`client`) and the bucket's layout (`layout`), the one
owner of every prefix, key, URL and access policy."""

from lakehouse.store.client import MultipartUpload, ObjectStore, StoreUnavailable, load_s3_model

__all__ = ["MultipartUpload", "ObjectStore", "StoreUnavailable", "load_s3_model"]
