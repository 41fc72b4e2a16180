//! Detached minisign signatures (Ed25519) of list files.
//!
//! An administrator signs the central list with `webwarden list sign`, which
//! writes `LIST.minisig` in the format of the minisign tool, so
//! `minisign -Vm LIST -P KEY` verifies it as well. Agents check each
//! downloaded list with [`verify_list`] against the public key in their
//! configuration and reject a list whose signature does not verify.

use std::io::Cursor;

use minisign::{PublicKey, SecretKey, SignatureBox};

/// The suffix of a detached signature file: `LIST.minisig` signs `LIST`.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// The maximum length of a trusted comment in bytes. The C minisign tool
/// reads the trusted comment line into an 8192-byte buffer
/// (`TRUSTEDCOMMENTMAXBYTES` in minisign.h), so this limit stays well inside
/// what it accepts.
pub const TRUSTED_COMMENT_MAX_BYTES: usize = 1024;

/// The line prefix of a comment line in minisign key and signature files.
const UNTRUSTED_COMMENT_PREFIX: &str = "untrusted comment: ";

/// The line prefix of the trusted comment line in a minisign signature file.
const TRUSTED_COMMENT_PREFIX: &str = "trusted comment: ";

/// The length of a public key in base64: 42 bytes (algorithm `Ed`, 8-byte
/// key ID, 32-byte Ed25519 key).
const PUBLIC_KEY_BASE64_LEN: usize = 56;

/// The length of a secret key in base64 (158 bytes), used to recognize a
/// secret key pasted where the public key belongs.
const SECRET_KEY_BASE64_LEN: usize = 212;

/// The length of the signature line in base64: 74 bytes (algorithm `ED`,
/// 8-byte key ID, 64-byte Ed25519 signature).
const SIGNATURE_BASE64_LEN: usize = 100;

/// The length of the global signature line in base64: a 64-byte Ed25519
/// signature of the signature and the trusted comment, with `==` padding.
const GLOBAL_SIGNATURE_BASE64_LEN: usize = 88;

/// A minisign public key that verifies list signatures.
#[derive(Clone, Debug)]
pub struct ListPublicKey {
    key: PublicKey,
}

impl ListPublicKey {
    /// Returns the key ID as minisign prints it: 16 upper-case hex digits.
    pub fn key_id(&self) -> String {
        format_key_id(self.key.keynum())
    }
}

/// The details of a verified signature besides the list content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The trusted comment, which the signature covers as well.
    pub trusted_comment: String,
    /// The ID of the key that made the signature.
    pub key_id: String,
}

/// The reason a list signature was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The public key text is not a minisign Ed25519 public key.
    #[error(
        "not a minisign public key: {reason}; use the `RW...` line that `webwarden list keygen` \
         printed, or the contents of its .pub file"
    )]
    MalformedPublicKey {
        /// The problem with the text.
        reason: String,
    },
    /// The signature is not a minisign signature file.
    #[error(
        "invalid signature file: {reason}; expected a minisign signature as written by \
         `webwarden list sign` or `minisign -S`"
    )]
    MalformedSignature {
        /// The problem with the file.
        reason: String,
    },
    /// The signature was made with a key other than the public key's.
    #[error(
        "the list was signed by key ID {signature_key_id}, but the public key has key ID \
         {public_key_id}; sign the list with the secret key of {public_key_id}, or configure \
         the public key of {signature_key_id} if the signing key was replaced"
    )]
    KeyIdMismatch {
        /// The key ID in the signature.
        signature_key_id: String,
        /// The key ID of the public key.
        public_key_id: String,
    },
    /// The list content does not match the signature.
    #[error(
        "the list content does not match its signature (key ID {key_id}), so the list was \
         changed after signing or the signature belongs to another file; if the change is \
         intended, sign the list again with `webwarden list sign`"
    )]
    BadSignature {
        /// The ID of the key that made the signature.
        key_id: String,
    },
    /// The trusted comment does not match the signature.
    #[error(
        "the trusted comment does not match its signature (key ID {key_id}), so the signature \
         file was edited after signing; sign the list again with `webwarden list sign`"
    )]
    BadTrustedComment {
        /// The ID of the key that made the signature.
        key_id: String,
    },
}

/// Parses a minisign public key: the base64 line (`RW...`) that
/// `minisign -G` and `webwarden list keygen` print, or the contents of a
/// `.pub` file (an `untrusted comment:` line, then that line).
///
/// # Errors
///
/// Returns [`SignatureError::MalformedPublicKey`] with the reason.
pub fn parse_public_key(text: &str) -> Result<ListPublicKey, SignatureError> {
    let malformed = |reason: String| SignatureError::MalformedPublicKey { reason };
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines
        .next()
        .ok_or_else(|| malformed("the text is empty".to_owned()))?;
    let encoded = if first.starts_with(UNTRUSTED_COMMENT_PREFIX.trim_end()) {
        lines.next().ok_or_else(|| {
            malformed("the text has a comment line but no key line after it".to_owned())
        })?
    } else {
        first
    };
    if lines.next().is_some() {
        return Err(malformed(
            "the text has more lines than a comment line and a key line".to_owned(),
        ));
    }
    if encoded.len() == SECRET_KEY_BASE64_LEN {
        return Err(malformed(
            "this is a secret key, which must stay with the administrator".to_owned(),
        ));
    }
    if encoded.len() != PUBLIC_KEY_BASE64_LEN {
        return Err(malformed(format!(
            "the key is {} characters long, but a minisign public key has {PUBLIC_KEY_BASE64_LEN}",
            encoded.len()
        )));
    }
    let key = PublicKey::from_base64(encoded)
        .map_err(|err| malformed(format!("the key is not valid base64 ({err})")))?;
    if !key.to_bytes().starts_with(b"Ed") {
        return Err(malformed(
            "the key is not an Ed25519 minisign key, whose base64 starts with `RW`".to_owned(),
        ));
    }
    Ok(ListPublicKey { key })
}

/// Verifies a detached minisign signature of a list against a public key
/// given as text (see [`parse_public_key`]), and returns the signed trusted
/// comment.
///
/// # Errors
///
/// Returns a [`SignatureError`] that names why the list is rejected.
pub fn verify_list(
    list: &[u8],
    signature: &[u8],
    public_key: &str,
) -> Result<SignatureInfo, SignatureError> {
    let key = parse_public_key(public_key)?;
    verify_list_with_key(list, signature, &key)
}

/// Verifies a detached minisign signature of a list against a parsed public
/// key, and returns the signed trusted comment.
///
/// Only prehashed signatures are accepted, which minisign writes by default
/// since version 0.8. Legacy signatures (`minisign -S -l`) are rejected.
///
/// # Errors
///
/// Returns a [`SignatureError`] that names why the list is rejected.
pub fn verify_list_with_key(
    list: &[u8],
    signature: &[u8],
    key: &ListPublicKey,
) -> Result<SignatureInfo, SignatureError> {
    let signature_box = parse_signature(signature)?;
    let key_id = format_key_id(signature_box.keynum());
    if signature_box.keynum() != key.key.keynum() {
        return Err(SignatureError::KeyIdMismatch {
            signature_key_id: key_id,
            public_key_id: key.key_id(),
        });
    }
    let quiet = true;
    let copy_to_stdout = false;
    let allow_legacy = false;
    if let Err(err) = minisign::verify(
        &key.key,
        &signature_box,
        Cursor::new(list),
        quiet,
        copy_to_stdout,
        allow_legacy,
    ) {
        // NOTE: minisign 0.10 reports both failures as `ErrorKind::Verify`,
        // so only the message distinguishes a bad comment signature. The
        // unit test `verify_rejects_edited_trusted_comment` pins that message.
        return Err(if err.to_string().contains("Comment signature") {
            SignatureError::BadTrustedComment { key_id }
        } else {
            SignatureError::BadSignature { key_id }
        });
    }
    let trusted_comment =
        signature_box
            .trusted_comment()
            .map_err(|err| SignatureError::MalformedSignature {
                reason: format!("the trusted comment cannot be read ({err})"),
            })?;
    Ok(SignatureInfo {
        trusted_comment,
        key_id,
    })
}

/// Signs a list with an unencrypted (or decrypted) secret key and returns
/// the contents of its `.minisig` file.
///
/// # Errors
///
/// Fails when the trusted comment is invalid (see [`check_trusted_comment`])
/// or minisign cannot sign, for example with a still encrypted key.
pub fn sign_list(
    list: &[u8],
    secret_key: &SecretKey,
    trusted_comment: &str,
) -> anyhow::Result<String> {
    check_trusted_comment(trusted_comment).map_err(anyhow::Error::msg)?;
    let public_key = PublicKey::from_secret_key(secret_key)?;
    let key_id = format_key_id(public_key.keynum());
    let untrusted_comment = format!("signature from webwarden list key {key_id}");
    let signature_box = minisign::sign(
        Some(&public_key),
        secret_key,
        Cursor::new(list),
        Some(trusted_comment),
        Some(&untrusted_comment),
    )?;
    let text = signature_box.into_string();
    // The file is checked as an agent will check it, so a signature that
    // would not verify is never written.
    verify_list_with_key(list, text.as_bytes(), &ListPublicKey { key: public_key })?;
    Ok(text)
}

/// Checks that a trusted comment fits on the one line the signature file
/// gives it, with no surrounding whitespace (minisign drops it on reading,
/// which would break the signature), and within
/// [`TRUSTED_COMMENT_MAX_BYTES`].
///
/// # Errors
///
/// Returns what is wrong with the comment.
pub fn check_trusted_comment(comment: &str) -> Result<(), String> {
    if comment.contains(['\n', '\r']) {
        return Err("the trusted comment must be one line, without line breaks".to_owned());
    }
    if comment.trim() != comment {
        return Err(
            "the trusted comment must not start or end with whitespace, which minisign drops"
                .to_owned(),
        );
    }
    if comment.len() > TRUSTED_COMMENT_MAX_BYTES {
        return Err(format!(
            "the trusted comment is {} bytes long, but at most {TRUSTED_COMMENT_MAX_BYTES} are \
             allowed",
            comment.len()
        ));
    }
    Ok(())
}

/// Formats a minisign key ID (8 bytes, little-endian) as 16 upper-case hex
/// digits, as minisign prints it in `.pub` files and messages.
pub fn format_key_id(keynum: &[u8]) -> String {
    match <[u8; 8]>::try_from(keynum) {
        Ok(bytes) => format!("{:016X}", u64::from_le_bytes(bytes)),
        Err(_) => keynum.iter().map(|b| format!("{b:02X}")).collect(),
    }
}

/// Parses a signature file and rejects legacy (not prehashed) signatures.
fn parse_signature(signature: &[u8]) -> Result<SignatureBox, SignatureError> {
    let malformed = |reason: String| SignatureError::MalformedSignature { reason };
    let text = std::str::from_utf8(signature)
        .map_err(|_| malformed("the file is not UTF-8 text".to_owned()))?;
    check_signature_layout(text).map_err(malformed)?;

    let signature_box =
        SignatureBox::from_string(text).map_err(|err| malformed(err.to_string()))?;
    if !signature_box.is_prehashed() {
        return Err(malformed(
            "it is a legacy signature (`minisign -S -l`), which is not accepted; sign the list \
             again without `-l`"
                .to_owned(),
        ));
    }
    Ok(signature_box)
}

/// Checks the 4 lines of a signature file: an untrusted comment line, the
/// signature line, the trusted comment line and the global signature line.
fn check_signature_layout(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the file is empty".to_owned());
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() < 4 {
        return Err(format!(
            "the file has {} lines, but a minisign signature has 4",
            lines.len()
        ));
    }
    if lines[4..].iter().any(|line| !line.trim().is_empty()) {
        return Err("the file has text after the 4 lines of a minisign signature".to_owned());
    }

    if !lines[0].starts_with(UNTRUSTED_COMMENT_PREFIX) {
        return Err(format!(
            "line 1 does not start with `{UNTRUSTED_COMMENT_PREFIX}`"
        ));
    }
    let signature_line = lines[1].trim();
    if signature_line.len() != SIGNATURE_BASE64_LEN {
        return Err(format!(
            "the signature on line 2 is {} characters long, but a minisign signature has \
             {SIGNATURE_BASE64_LEN}",
            signature_line.len()
        ));
    }
    if !lines[2].starts_with(TRUSTED_COMMENT_PREFIX) {
        return Err(format!(
            "line 3 does not start with `{TRUSTED_COMMENT_PREFIX}`"
        ));
    }

    // minisign 0.10 indexes the first 64 bytes of the global signature and
    // panics on a shorter one, so its length is checked here.
    let global_signature = lines[3].trim();
    if global_signature.len() != GLOBAL_SIGNATURE_BASE64_LEN || !global_signature.ends_with("==") {
        return Err(format!(
            "the global signature on line 4 is not {GLOBAL_SIGNATURE_BASE64_LEN} characters of \
             base64 ending in `==`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use minisign::KeyPair;

    use super::*;

    const LIST: &[u8] = b".*4399\\.com,Entertainment\n(.*\\.)?hacker\\.com,Malicious Host\n";

    fn key_pair() -> KeyPair {
        KeyPair::generate_unencrypted_keypair().unwrap()
    }

    fn public_key_line(pair: &KeyPair) -> String {
        pair.pk.to_base64()
    }

    /// Signs `LIST` and returns the signature file and the public key line.
    fn signed_list(comment: &str) -> (String, String) {
        let pair = key_pair();
        let signature = sign_list(LIST, &pair.sk, comment).unwrap();
        (signature, public_key_line(&pair))
    }

    /// Replaces line `index` (0-based) of a signature file.
    fn replace_line(signature: &str, index: usize, line: &str) -> String {
        let mut lines: Vec<String> = signature.lines().map(str::to_owned).collect();
        lines[index] = line.to_owned();
        lines.join("\n") + "\n"
    }

    #[test]
    fn round_trip_verifies() {
        let (signature, key) = signed_list("file:list.csv");
        let info = verify_list(LIST, signature.as_bytes(), &key).unwrap();
        assert_eq!(info.trusted_comment, "file:list.csv");
        assert_eq!(info.key_id, parse_public_key(&key).unwrap().key_id());
    }

    #[test]
    fn trusted_comment_survives() {
        let comment = "file:list.csv\tsize:62\tsigned:2025-01-02T03:04:05Z ünïcode";
        let (signature, key) = signed_list(comment);
        let info = verify_list(LIST, signature.as_bytes(), &key).unwrap();
        assert_eq!(info.trusted_comment, comment);
        assert!(signature.contains(&format!("trusted comment: {comment}\n")));
    }

    #[test]
    fn signature_file_has_minisign_layout() {
        let pair = key_pair();
        let signature = sign_list(LIST, &pair.sk, "c").unwrap();
        let lines: Vec<&str> = signature.lines().collect();
        assert_eq!(lines.len(), 4);
        let key_id = format_key_id(pair.pk.keynum());
        assert_eq!(
            lines[0],
            format!("untrusted comment: signature from webwarden list key {key_id}")
        );
        assert!(lines[1].starts_with("RU"), "prehashed `ED`: {}", lines[1]);
        assert_eq!(lines[2], "trusted comment: c");
        assert!(signature.ends_with('\n'));
    }

    #[test]
    fn tampered_list_is_rejected() {
        let (signature, key) = signed_list("c");
        let mut list = LIST.to_vec();
        list[0] ^= 0x01;
        let err = verify_list(&list, signature.as_bytes(), &key).unwrap_err();
        assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("changed after signing"), "{err}");
    }

    #[test]
    fn appended_line_is_rejected() {
        let (signature, key) = signed_list("c");
        let mut list = LIST.to_vec();
        list.extend_from_slice(b"(.*\\.)?google\\.com,Search,allow\n");
        let err = verify_list(&list, signature.as_bytes(), &key).unwrap_err();
        assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn verify_rejects_edited_trusted_comment() {
        let (signature, key) = signed_list("file:list.csv");
        let edited = replace_line(&signature, 2, "trusted comment: file:other.csv");
        let err = verify_list(LIST, edited.as_bytes(), &key).unwrap_err();
        assert!(
            matches!(err, SignatureError::BadTrustedComment { .. }),
            "{err}"
        );
    }

    #[test]
    fn other_key_is_rejected_naming_both_ids() {
        let (signature, _) = signed_list("c");
        let other = key_pair();
        let other_id = format_key_id(other.pk.keynum());
        let err = verify_list(LIST, signature.as_bytes(), &public_key_line(&other)).unwrap_err();
        let SignatureError::KeyIdMismatch {
            signature_key_id,
            public_key_id,
        } = &err
        else {
            panic!("expected a key ID mismatch, got {err}");
        };
        assert_eq!(public_key_id, &other_id);
        assert_ne!(signature_key_id, &other_id);
        let message = err.to_string();
        assert!(message.contains(signature_key_id.as_str()), "{message}");
        assert!(message.contains(&other_id), "{message}");
    }

    #[test]
    fn forged_key_id_is_rejected() {
        // A forger signs with their own key under the real key's ID. In a
        // minisign secret key, the key ID sits at bytes 54..62, after the
        // algorithm IDs, KDF salt and KDF limits.
        let real = key_pair();
        let forger = key_pair();
        let mut forged_bytes = forger.sk.to_bytes();
        forged_bytes[54..62].copy_from_slice(real.pk.keynum());
        let forged_key = SecretKey::from_bytes(&forged_bytes).unwrap();
        let forged = sign_list(LIST, &forged_key, "c").unwrap();
        let real_key = parse_public_key(&public_key_line(&real)).unwrap();
        let err = verify_list_with_key(LIST, forged.as_bytes(), &real_key).unwrap_err();
        assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn pub_file_contents_are_accepted() {
        let pair = key_pair();
        let signature = sign_list(LIST, &pair.sk, "c").unwrap();
        let pub_file = pair.pk.to_box().unwrap().into_string();
        assert!(pub_file.starts_with("untrusted comment: minisign public key: "));
        let info = verify_list(LIST, signature.as_bytes(), &pub_file).unwrap();
        assert_eq!(info.trusted_comment, "c");
        let crlf = pub_file.replace('\n', "\r\n");
        assert!(verify_list(LIST, signature.as_bytes(), &crlf).is_ok());
        let padded = format!("  {}  \n", public_key_line(&pair));
        assert!(verify_list(LIST, signature.as_bytes(), &padded).is_ok());
    }

    #[test]
    fn malformed_public_keys_are_rejected() {
        let pair = key_pair();
        let line = public_key_line(&pair);
        let secret = pair.sk.to_box(None).unwrap().into_string();
        let secret_line = secret.lines().nth(1).unwrap().to_owned();
        let mut wrong_algorithm = line.clone();
        wrong_algorithm.replace_range(0..3, "AAA");
        let cases = [
            ("", "empty"),
            ("   \n", "empty"),
            ("RWQ", "3 characters long"),
            ("untrusted comment: minisign public key: 0", "no key line"),
            (&format!("{line}\n{line}"), "more lines"),
            (&"!".repeat(56), "not valid base64"),
            (&wrong_algorithm, "not an Ed25519"),
            (&secret_line, "secret key"),
        ];
        for (text, reason) in cases {
            let err = parse_public_key(text).unwrap_err();
            assert!(
                matches!(err, SignatureError::MalformedPublicKey { .. }),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn malformed_signatures_are_rejected() {
        let (signature, key) = signed_list("c");
        let lines: Vec<&str> = signature.lines().collect();
        let short_global = replace_line(&signature, 3, &lines[3][..44]);
        // The second base64 character contains the low bits of the algorithm's
        // first byte and the high bits of its second: `RU` is `ED`
        // (prehashed), `RW` is `Ed` (legacy).
        let legacy = replace_line(&signature, 1, &format!("RW{}", &lines[1][2..]));
        let cases = [
            (String::new(), "empty"),
            ("<html>Not Found</html>\n".to_owned(), "1 lines"),
            (replace_line(&signature, 0, "comment: x"), "line 1"),
            (replace_line(&signature, 1, "RUQ"), "line 2"),
            (replace_line(&signature, 2, "c"), "line 3"),
            (short_global, "line 4"),
            (format!("{signature}extra\n"), "text after"),
            (legacy, "legacy signature"),
            (
                replace_line(&signature, 1, &"!".repeat(100)),
                "invalid signature",
            ),
        ];
        for (text, reason) in &cases {
            let err = verify_list(LIST, text.as_bytes(), &key).unwrap_err();
            assert!(
                matches!(err, SignatureError::MalformedSignature { .. }),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains(reason), "{text:?}: {err}");
        }
        let err = verify_list(LIST, &[0xff, 0xfe, 0x00], &key).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn trailing_blank_lines_are_accepted() {
        let (signature, key) = signed_list("c");
        let padded = format!("{signature}\n\n");
        assert!(verify_list(LIST, padded.as_bytes(), &key).is_ok());
        let crlf = signature.replace('\n', "\r\n");
        assert!(verify_list(LIST, crlf.as_bytes(), &key).is_ok());
    }

    #[test]
    fn invalid_trusted_comments_are_rejected() {
        let pair = key_pair();
        let too_long = "x".repeat(TRUSTED_COMMENT_MAX_BYTES + 1);
        for comment in ["a\nb", "a\rb", " a", "a ", too_long.as_str()] {
            assert!(check_trusted_comment(comment).is_err(), "{comment:?}");
            assert!(sign_list(LIST, &pair.sk, comment).is_err(), "{comment:?}");
        }
        let longest = "x".repeat(TRUSTED_COMMENT_MAX_BYTES);
        assert!(check_trusted_comment(&longest).is_ok());
        assert!(check_trusted_comment("").is_ok());
    }

    #[test]
    fn key_id_matches_pub_file_comment() {
        let pair = key_pair();
        let pub_file = pair.pk.to_box().unwrap().into_string();
        let key = parse_public_key(&pub_file).unwrap();
        let comment = pub_file.lines().next().unwrap();
        assert_eq!(
            comment,
            format!("untrusted comment: minisign public key: {}", key.key_id())
        );
    }
}
