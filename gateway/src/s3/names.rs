//! Bucket names and object keys that arrive outside the request path (copy sources, the key
//! lists of DeleteObjects), checked with the same rules s3s applies to the path itself:
//! AWS bucket naming rules (`InvalidBucketName`) and keys of 1 to 1024 bytes
//! (`KeyTooLongError`). Keys are data, never file names: nothing else is forbidden in them.

use s3s::validation::{AwsNameValidation, NameValidation};
use s3s::{S3Error, S3ErrorCode, S3Result};

pub const MAX_KEY_BYTES: usize = 1024;

pub fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "object keys must not be empty",
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(S3Error::with_message(
            S3ErrorCode::KeyTooLongError,
            format!(
                "Your key is too long: {} bytes, the limit is {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    Ok(())
}

pub fn check_bucket_name(name: &str) -> S3Result<()> {
    if AwsNameValidation::new().validate_bucket_name(name) {
        Ok(())
    } else {
        Err(S3Error::with_message(
            S3ErrorCode::InvalidBucketName,
            format!("The specified bucket `{name}` is not valid"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"x".repeat(1024)).is_ok());
        // 1024 bytes counted as UTF-8, not characters.
        assert!(check_key(&"é".repeat(512)).is_ok());
        let e = check_key(&"é".repeat(513)).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::KeyTooLongError);
        assert!(check_key("").is_err());
        assert!(check_key("../../etc/passwd").is_ok());
        assert!(check_key("\u{1}ctrl\n").is_ok());
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket.2", "a1b"] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Upper",
            "under_score",
            "-dash",
            "192.168.1.1",
            "a..b",
            &"a".repeat(64),
        ] {
            let e = check_bucket_name(bad).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidBucketName, "{bad}");
        }
    }
}
