//! List selection for commands: `--list` values, the built-in default list,
//! and loading both into a policy with bad rows reported on stderr.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::anyhow;
use webwarden_policy::{
    Action, BadRow, Format, LoadError, Policy, PolicyBuilder, SourceOptions, MAX_KEPT_BAD_ROWS,
};

use crate::CliError;

/// The default list, compiled into the binary.
pub const DEFAULT_LIST: &[u8] = include_bytes!("../../../blacklist.csv");

/// The source name of the default list in verdicts and reports.
pub const DEFAULT_LIST_NAME: &str = "blacklist.csv (built-in)";

/// How many bad rows are printed before the rest are only counted.
const PRINTED_BAD_ROWS: usize = 20;

/// The keys of the `key=value` form of a `--list` value.
const OPTION_KEYS: [&str; 4] = ["path", "format", "category", "action"];

/// The `--list` value that names the built-in default list.
pub const BUILTIN: &str = "builtin";

/// One `--list` value: `builtin`, a path, an `https://` URL, or
/// `key=value` pairs separated by commas with the keys `path`, `format`,
/// `category` and `action` (`path` may be a URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSpec {
    /// The list file; `None` with no URL is the built-in list.
    pub path: Option<PathBuf>,
    /// The list's URL, for a list that `webwarden run` downloads.
    pub url: Option<url::Url>,
    /// How to read it.
    pub options: SourceOptions,
}

impl ListSpec {
    /// Returns the spec of the built-in default list.
    pub fn builtin() -> ListSpec {
        ListSpec {
            path: None,
            url: None,
            options: SourceOptions::default(),
        }
    }

    /// Returns the spec of a path or URL value, without options.
    fn location(value: &str, options: SourceOptions) -> Result<ListSpec, String> {
        let lower = value.trim_start().to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = url::Url::parse(value.trim())
                .map_err(|err| format!("invalid list URL {value:?}: {err}"))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(format!(
                    "invalid list URL {value:?}: credentials in the URL would show in logs, status and events; publish the list without a password, or restrict the server to your network"
                ));
            }
            return Ok(ListSpec {
                path: None,
                url: Some(url),
                options,
            });
        }
        Ok(ListSpec {
            path: Some(PathBuf::from(value)),
            url: None,
            options,
        })
    }

    /// Returns how reports name the list: its path, URL or the built-in name.
    pub fn name(&self) -> String {
        match (&self.url, &self.path) {
            (Some(url), _) => url.to_string(),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => DEFAULT_LIST_NAME.to_owned(),
        }
    }
}

impl FromStr for ListSpec {
    type Err = String;

    fn from_str(value: &str) -> Result<ListSpec, String> {
        if value.trim().is_empty() {
            return Err("empty list path; give a file path or `builtin`".to_owned());
        }
        if value == BUILTIN {
            return Ok(ListSpec::builtin());
        }
        let first_key = value
            .split(',')
            .next()
            .and_then(|pair| pair.split_once('='));
        if !first_key.is_some_and(|(key, _)| OPTION_KEYS.contains(&key.trim())) {
            return ListSpec::location(value, SourceOptions::default());
        }
        parse_options(value)
    }
}

/// Returns the specs, or the built-in list's when there are none.
fn or_builtin(specs: &[ListSpec]) -> std::borrow::Cow<'_, [ListSpec]> {
    if specs.is_empty() {
        std::borrow::Cow::Owned(vec![ListSpec::builtin()])
    } else {
        std::borrow::Cow::Borrowed(specs)
    }
}

/// Returns the version of lists with these contents, in order: the first
/// 12 hex digits of their SHA-256, so every agent with the same lists
/// reports the same version wherever the files are.
pub fn version_of<'a>(contents: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for bytes in contents {
        hash.update(bytes);
        hash.update([0]);
    }
    let digest = hash.finalize();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the version of the local lists among `specs` (see
/// [`version_of`]). Downloaded lists are left out: only `webwarden run`
/// has their contents.
///
/// # Errors
///
/// Fails when a list file cannot be read.
pub fn version(specs: &[ListSpec]) -> anyhow::Result<String> {
    let mut contents = Vec::new();
    for spec in or_builtin(specs).iter() {
        match (&spec.url, &spec.path) {
            (Some(_), _) => {}
            (None, None) => contents.push(DEFAULT_LIST.to_vec()),
            (None, Some(path)) => contents.push(std::fs::read(path).map_err(|err| {
                anyhow!(
                    "failed to read list {} for its version: {err}",
                    path.display()
                )
            })?),
        }
    }
    Ok(version_of(contents.iter().map(Vec::as_slice)))
}

/// Parses the `key=value,...` form of a `--list` value.
fn parse_options(value: &str) -> Result<ListSpec, String> {
    let mut path = None;
    let mut options = SourceOptions::default();
    let mut seen = Vec::new();
    for pair in value.split(',') {
        let (key, item) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in list option {pair:?}"))?;
        let key = key.trim();
        if seen.contains(&key) {
            return Err(format!("list option {key:?} is given twice"));
        }
        seen.push(key);
        if item.trim().is_empty() {
            return Err(format!("empty {key}= in list options"));
        }
        match key {
            "path" => path = Some(PathBuf::from(item)),
            "format" => options.format = Some(item.parse::<Format>()?),
            "category" => options.category = Some(item.trim().to_owned()),
            "action" => options.action = item.parse::<Action>()?,
            other => {
                return Err(format!(
                    "unknown list option {other:?}; expected path, format, category or action"
                ))
            }
        }
    }
    let path: PathBuf = path.ok_or("missing path= in list options")?;
    ListSpec::location(&path.to_string_lossy(), options)
}

/// Loads the given lists, or the built-in list when there are none.
///
/// # Errors
///
/// Returns [`CliError::Usage`] when a list cannot be read, has no usable
/// rows, or fails strict loading (after printing the bad rows), and
/// [`CliError::Failed`] when the rules cannot be compiled.
pub fn load(specs: &[ListSpec], strict: bool) -> Result<Policy, CliError> {
    let mut builder = PolicyBuilder::new().strict(strict);
    for spec in or_builtin(specs).iter() {
        if let Some(url) = &spec.url {
            return Err(CliError::Usage(anyhow!(
                "the list {url} is a URL, which only `webwarden run` downloads; download it and pass the file's path"
            )));
        }
        match &spec.path {
            None => {
                builder.add_text(DEFAULT_LIST_NAME, DEFAULT_LIST, &spec.options);
            }
            Some(path) => {
                builder
                    .add_file(path, &spec.options)
                    .map_err(|err| CliError::Usage(err.into()))?;
            }
        }
    }
    let policy = builder.build().map_err(|err| match err {
        LoadError::Strict {
            count, bad_rows, ..
        } => {
            print_bad_rows(&bad_rows, count, "error");
            CliError::Usage(anyhow!(
                "{count} bad row(s) in strict mode; no list was loaded, fix the rows above"
            ))
        }
        LoadError::NoUsableRows {
            bad_rows,
            ref bad_row_list,
            ..
        } => {
            print_bad_rows(bad_row_list, bad_rows, "error");
            CliError::Usage(err.into())
        }
        err => CliError::Failed(anyhow::Error::new(err).context("failed to load the lists")),
    })?;
    for source in policy.sources() {
        if source.rules.total() == 0 {
            eprintln!("warning: list {} contains no rules", source.name);
        }
    }
    Ok(policy)
}

/// Prints up to [`PRINTED_BAD_ROWS`] bad rows to stderr, then a count of
/// the rest.
pub fn print_bad_rows(rows: &[BadRow], count: usize, level: &str) {
    for row in rows.iter().take(PRINTED_BAD_ROWS) {
        eprintln!("{level}: {row}");
    }
    if count > PRINTED_BAD_ROWS {
        let rest = count - PRINTED_BAD_ROWS;
        eprintln!(
            "{level}: {rest} more bad row(s) not shown; `webwarden list stats LIST` shows \
             up to {MAX_KEPT_BAD_ROWS}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_value_is_a_path() {
        let spec: ListSpec = "lists/hosts.txt".parse().unwrap();
        assert_eq!(spec.path, Some(PathBuf::from("lists/hosts.txt")));
        assert_eq!("builtin".parse::<ListSpec>().unwrap(), ListSpec::builtin());
        let err = "https://admin:secret@lists.example/l.csv"
            .parse::<ListSpec>()
            .unwrap_err();
        assert!(err.contains("credentials"), "{err}");
        let url = "https://lists.example/l.csv".parse::<ListSpec>().unwrap();
        assert_eq!(url.url.unwrap().as_str(), "https://lists.example/l.csv");
        assert_eq!(spec.options, SourceOptions::default());
    }

    #[test]
    fn key_value_pairs_set_options() {
        let spec: ListSpec = "format=domains,category=Gambling,action=allow,path=g.txt"
            .parse()
            .unwrap();
        assert_eq!(spec.path, Some(PathBuf::from("g.txt")));
        assert_eq!(spec.options.format, Some(Format::Domains));
        assert_eq!(spec.options.category.as_deref(), Some("Gambling"));
        assert_eq!(spec.options.action, Action::Allow);
    }

    #[test]
    fn bad_options_are_rejected() {
        let cases = [
            ("path=a,format=xml", "invalid list format \"xml\""),
            ("path=a,colour=red", "unknown list option \"colour\""),
            ("path=a,action=deny", "invalid action \"deny\""),
            ("path=a,category=", "empty category="),
            ("format=csv,path", "expected key=value"),
            ("path=a,path=b", "\"path\" is given twice"),
            ("path=,format=csv", "empty path="),
            ("", "empty list path"),
        ];
        for (value, expected) in cases {
            let err = value.parse::<ListSpec>().unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }
}
