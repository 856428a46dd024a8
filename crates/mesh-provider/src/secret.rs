//! [`ApiKey`]: the price API key as a secret type, so it cannot end up in a log line, an error
//! message or a serialized document by accident.

use std::fmt;

use crate::SourceError;

/// A price API key.
///
/// `Debug` prints `ApiKey(***)`; there is no `Display`, no `Serialize` and no `PartialEq`
/// (nothing should compare or print keys). The only way to the text is [`ApiKey::expose`],
/// used to build the request header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key`, trimmed of surrounding whitespace (a pasted key often ends in a newline).
    ///
    /// # Errors
    /// [`SourceError::InvalidApiKey`] when the key is empty or only whitespace, or when it holds
    /// a character that cannot go in an HTTP header (anything but visible ASCII) — such a key
    /// could never authenticate.
    pub fn new(key: String) -> Result<Self, SourceError> {
        let trimmed = key.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(SourceError::InvalidApiKey);
        }
        if trimmed.len() == key.len() { Ok(Self(key)) } else { Ok(Self(trimmed.to_owned())) }
    }

    /// The key's text, for the `X-API-KEY` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let key = ApiKey::new("super-secret-123".into()).unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(format!("{:?}", Some(key.clone())), "Some(ApiKey(***))");
        assert_eq!(key.expose(), "super-secret-123");
    }

    #[test]
    fn empty_blank_and_unsendable_keys_are_refused_and_padding_is_trimmed() {
        for bad in ["", "   ", "\n\t", "two words", "caf\u{e9}", "a\u{0}b"] {
            assert_eq!(ApiKey::new(bad.into()).unwrap_err(), SourceError::InvalidApiKey, "{bad:?}");
        }
        assert_eq!(ApiKey::new("  abc123\n".into()).unwrap().expose(), "abc123");
    }
}
