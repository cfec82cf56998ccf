//! `--s3-bucket`: chunks and saved files on S3 (or an S3-compatible server), shared by
//! every server started with the same bucket and database.

use object_store::aws::AmazonS3Builder;
use sea_orm::DatabaseConnection;
use sea_orm_resumable::{
    UploadsBuilder,
    storage::object::{ObjectFiles, ObjectStorage},
};
use std::sync::Arc;

use crate::Args;

/// `builder` with chunks and files in `bucket`, the ledger in `db`.
pub fn object_storage(
    builder: UploadsBuilder,
    args: &Args,
    bucket: &str,
    db: &DatabaseConnection,
) -> Result<UploadsBuilder, object_store::Error> {
    let mut s3 = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&args.s3_region);
    if let Some(endpoint) = &args.s3_endpoint {
        s3 = s3
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    let s3 = Arc::new(s3.build()?);
    let prefix = args.chunk_subdir.to_string_lossy();
    let mut storage = ObjectStorage::new(s3.clone(), db.clone()).with_prefix(&prefix);
    if args.s3_parts {
        storage = storage.with_parts(s3.clone());
    }
    let files = ObjectFiles::new(s3.clone()).with_signer(s3);
    Ok(builder.object_storage(storage.with_files(files)))
}
