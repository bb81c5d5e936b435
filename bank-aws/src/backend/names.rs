//! The names of the AWS backend's resources and the rules AWS puts on them, checked before any
//! call so that a bad name is a configuration error naming the variable, not a failed request.

/// The resources one bank uses, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    /// DynamoDB table of idempotency keys.
    pub idempotency_table: String,
    /// SQS FIFO queue of transfers (its dead-letter queue is `<stem>-dlq.fifo`).
    pub transfer_queue: String,
    /// SNS FIFO topic of events (a name, or an ARN).
    pub events_topic: String,
    /// Subscriptions to the topic are the SQS FIFO queues `<prefix>-<subscription>.fifo` (the
    /// notifications process reads `<prefix>-notifications.fifo`).
    pub subscription_queue_prefix: String,
    /// S3 bucket (Object Lock) of statements.
    pub statements_bucket: String,
    /// S3 bucket (Object Lock) of sealed audit segments (may be the statements bucket).
    pub audit_bucket: String,
}

/// An SQS FIFO queue name: letters, digits, `-` and `_`, ending `.fifo`, short enough for its
/// dead-letter queue `<stem>-dlq.fifo` to fit SQS's 80 characters.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    check_fifo(name, crate::sqs::SQS_QUEUE_NAME_LEN_MAX - "-dlq".len(), "an SQS FIFO queue name")
}

/// The prefix of subscription queues: 1 to 40 letters, digits, `-` and `_` (so that
/// `<prefix>-<subscription>.fifo` and its dead-letter queue fit SQS's limits).
pub fn check_queue_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 40 {
        return Err("a subscription queue prefix has 1 to 40 characters".into());
    }
    if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("a subscription queue prefix has only letters, digits, - and _".into());
    }
    Ok(())
}

/// An SNS FIFO topic: its name (1 to 256 characters of letters, digits, `-` and `_`, ending
/// `.fifo`) or its ARN (`arn:<partition>:sns:<region>:<account>:<name>`).
pub fn check_topic_name(name: &str) -> Result<(), String> {
    match name.strip_prefix("arn:") {
        Some(arn) => {
            let parts: Vec<&str> = arn.split(':').collect();
            match parts.as_slice() {
                [_, "sns", _, _, topic] => check_fifo(topic, 256, "an SNS FIFO topic name"),
                _ => Err("an SNS topic ARN is arn:<partition>:sns:<region>:<account>:<name>".into()),
            }
        }
        None => check_fifo(name, 256, "an SNS FIFO topic name"),
    }
}

fn check_fifo(name: &str, max: usize, what: &str) -> Result<(), String> {
    let stem = name.strip_suffix(".fifo").ok_or_else(|| format!("{what} ends with .fifo"))?;
    if stem.is_empty() || name.len() > max {
        return Err(format!("{what} has 1 to {max} characters"));
    }
    if !stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("{what} has only letters, digits, - and _ before .fifo"));
    }
    Ok(())
}

/// A DynamoDB table name: 3 to 255 characters of letters, digits, `_`, `-` and `.`.
pub fn check_table_name(name: &str) -> Result<(), String> {
    if !(3..=255).contains(&name.len()) {
        return Err("a DynamoDB table name has 3 to 255 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err("a DynamoDB table name has only letters, digits, _, - and .".into());
    }
    Ok(())
}

/// An S3 bucket name (general purpose): 3 to 63 characters of lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit, no `..`, not an IP address. Names with dots
/// are refused too: virtual-host TLS does not cover them.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err("an S3 bucket name has 3 to 63 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("an S3 bucket name here has only lowercase letters, digits and - (no dots: TLS)".into());
    }
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge(name.bytes().next()) || !edge(name.bytes().last()) {
        return Err("an S3 bucket name starts and ends with a letter or digit".into());
    }
    if name.starts_with("xn--") || name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return Err("an S3 bucket name may not use a reserved prefix or suffix".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_aws_rules() {
        assert!(check_queue_name("bank-transfers.fifo").is_ok());
        assert!(check_queue_name(&format!("{}.fifo", "q".repeat(71))).is_ok());
        for bad in
            ["bank-transfers", ".fifo", "bank transfers.fifo", "bank.x.fifo", &format!("{}.fifo", "q".repeat(72))]
        {
            assert!(check_queue_name(bad).is_err(), "{bad}");
        }
        assert!(check_topic_name("bank-events.fifo").is_ok());
        assert!(check_topic_name("bank-events").is_err(), "standard topics do not keep order");
        assert!(check_topic_name("arn:aws:sns:eu-west-1:123456789012:bank-events.fifo").is_ok());
        assert!(check_topic_name("arn:aws:sns:eu-west-1:123456789012:bank-events").is_err());
        assert!(check_topic_name("arn:aws:sqs:eu-west-1:123456789012:bank-events.fifo").is_err());
        assert!(check_queue_prefix("bank-events").is_ok());
        for bad in ["", "bank.events", &"p".repeat(41)] {
            assert!(check_queue_prefix(bad).is_err(), "{bad}");
        }
        assert!(check_table_name("bank.idempotency_v1").is_ok());
        for bad in ["ab", "bank idempotency", &"t".repeat(256)] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
        assert!(check_bucket_name("bank-statements-2026").is_ok());
        for bad in ["ab", "Bank", "bank.statements", "-bank", "bank-", "xn--bank", "b_ank", &"b".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
